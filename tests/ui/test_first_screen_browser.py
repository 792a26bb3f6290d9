"""The first screen at 1280x800: it says what the model does, the sidebar's edit buttons fit, and undone edits can
be redone with the sidebar button after a reload."""

from __future__ import annotations

from tests.ui.app_fixtures import open_app, served_app  # noqa: F401 - the served demo app, one model per page
from tests.ui.conftest import wait_until


def test_first_screen_explains_the_task_and_the_blocks(page, served_app, artifacts):
    served, apps = served_app
    page.set_viewport_size({"width": 1280, "height": 800})
    open_app(page, served, apps)
    card = page.get_by_text("What this model does and how to read this dashboard")
    assert card.is_visible()
    assert page.get_by_text("(64 keys, 64 values)").is_visible()
    assert page.get_by_text("blocks 0-1: an mLSTM block", exact=False).is_visible()
    box = page.get_by_text("Task: multi-query associative recall").bounding_box()
    assert box is not None and box["y"] + box["height"] < 800  # on the first screen, no scrolling
    page.screenshot(path=str(artifacts / "first_screen.png"))


def test_sidebar_edit_buttons_fit_inside_the_sidebar_at_1280x800(page, served_app):
    served, apps = served_app
    page.set_viewport_size({"width": 1280, "height": 800})
    open_app(page, served, apps)
    sidebar = page.locator("#sidebar").bounding_box()
    for label in ("Undo edit", "Redo edit", "Reset edits"):
        b = page.get_by_role("button", name=label).bounding_box()
        assert b is not None and b["x"] >= sidebar["x"] and b["x"] + b["width"] <= sidebar["x"] + sidebar["width"], (
            label, b, sidebar)


def test_an_undone_edit_is_redone_by_the_sidebar_button_after_a_reload(page, served_app):
    served, apps = served_app
    app, _ = open_app(page, served, apps)
    app.session.edit_connection("block", None, "blocks.0", "blocks.1", 0).result()
    edited = app.session.accuracy
    app.session.undo().result()
    assert app.session.result.redoable == 1
    wait_until(lambda: "session=" in page.url, page=page)
    page.goto(page.url)  # a reload on this session's key
    page.wait_for_selector(".bk-Canvas", timeout=30000)
    wait_until(lambda: len(apps) > 1 and apps[-1].session.trace is not None and not apps[-1].session.busy,
               timeout=30, page=page)
    again = apps[-1]
    redo = page.get_by_role("button", name="Redo edit")
    wait_until(lambda: redo.is_enabled(), page=page)
    redo.click()
    wait_until(lambda: again.session.edits == [("block", None, "blocks.0", "blocks.1", 0)], timeout=30, page=page)
    wait_until(lambda: not again.session.busy and again.session.accuracy == edited, timeout=30, page=page)


def test_dark_theme_draws_graph_labels_rings_and_blank_cells_in_dark_colours(page, served_app, artifacts):
    from xlstm_viz.dashboard.colors import DARK_INK, DARK_MUTED, DARK_PAPER, KIND_COLORS

    served, apps = served_app
    page.set_viewport_size({"width": 1280, "height": 800})
    app, _ = open_app(page, served, apps, query="?theme=dark")
    g = app.model_view.cell_graph
    assert g.labels.glyph.text_color == DARK_INK and g.info_labels.glyph.text_color == DARK_MUTED
    assert g.labels.glyph.background_fill_color == DARK_PAPER
    memory = list(g.node_source.data["id"]).index("blocks.0.mlstm.memory")
    assert KIND_COLORS["memory"] == "#000000" and g.node_source.data["color"][memory] == DARK_INK
    from bokeh.models import LinearColorMapper

    mapper = app.model_view.matrix_figure.select_one({"type": LinearColorMapper})
    assert mapper.nan_color == DARK_PAPER
    assert app.diff_view._changed_color == DARK_INK
    page.screenshot(path=str(artifacts / "dark_model.png"))
    # and a light page (the default) keeps the light colours
    light, _ = open_app(page, served, apps)
    assert light.model_view.cell_graph.labels.glyph.text_color == "#000000"
    assert light.model_view.cell_graph.labels.glyph.background_fill_color == "#ffffff"
