"""Selecting and editing are separate gestures in chromium, and every edit says what it did."""

from __future__ import annotations

from tests.ui.app_fixtures import notifications, open_app, script_errors, served_app  # noqa: F401 - served_app is a fixture
from tests.ui.conftest import bokeh_to_screen, wait_until
from xlstm_viz.dashboard.model_view import matrix_cell_center


def click_data_point(page, fig, x, y, done, tries=5):
    """Click data point (x, y) of a Bokeh figure until `done()` holds (a click in a layout pass can be lost)."""
    for _ in range(tries):
        sx, sy = bokeh_to_screen(page, fig.id, x, y)
        page.mouse.move(sx, sy)
        page.wait_for_timeout(300)
        page.mouse.click(sx, sy)
        try:
            wait_until(done, timeout=3, page=page)
            return
        except AssertionError:
            continue
    raise AssertionError(f"clicking ({x}, {y}) in {fig.title.text!r} never took effect")


def test_clicking_a_block_node_selects_it_and_edits_nothing(page, served_app, artifacts):  # noqa: F811
    served, apps = served_app
    app, errors = open_app(page, served, apps)
    assert app.session.accuracy == 1.0
    mv = app.model_view
    g = mv.block_graph
    i = g.names.index("blocks.1")
    click_data_point(page, g.figure, float(g._nodes["x"][i]), float(g._nodes["y"][i]), lambda: mv.block == 1)
    page.wait_for_timeout(1500)  # an edit (if one were made) would have re-run by now
    assert app.session.edits == []
    assert app.session.accuracy == 1.0
    assert ("blocks.0", "blocks.1", 1) in app.session.graph("block")[1]
    assert app.session.last_action == ""
    assert not script_errors(errors), errors


def test_a_heatmap_click_selects_and_only_the_button_edits_and_says_what_it_did(page, served_app, artifacts):  # noqa: F811
    served, apps = served_app
    app, errors = open_app(page, served, apps)
    mv = app.model_view
    src, dst = "blocks.0.mlstm.igate", "blocks.0.mlstm.memory"
    x, y = matrix_cell_center(mv._matrix, src, dst)
    click_data_point(page, mv.matrix_figure, x, y, lambda: mv.selected == ("cell", 0, src, dst))
    page.wait_for_timeout(1000)
    assert app.session.edits == []  # selecting is not editing
    wait_until(lambda: page.get_by_text("now on").count() == 1, page=page)
    page.get_by_role("button", name="Set flipped").click()
    wait_until(lambda: app.session.edits == [("cell", 0, src, dst, -1)] and not app.session.busy, page=page)
    said = f"cell wiring of block 0: {src} -> {dst} on -> flipped; recall accuracy 1.000 -> "
    wait_until(lambda: app.session.last_action.startswith(said), page=page)
    wait_until(lambda: page.get_by_text(said, exact=False).count() >= 1, page=page)  # sidebar line
    wait_until(lambda: any(t.startswith(said) for t in notifications(page)), page=page)  # toast
    assert page.get_by_text("now flipped").count() == 1
    page.screenshot(path=str(artifacts / "dashboard_edit_message.png"))
    assert not script_errors(errors), errors
