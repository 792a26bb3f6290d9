"""The research views in chromium: patching from the UI, the tensor inspector at a breakpoint, and a 32-block
model's block graph (a strip whose nodes are clickable). The shared-scale switch is tested without a browser."""

from __future__ import annotations

import pytest

from tests.ui.app_fixtures import open_app, script_errors, serve_apps, served_app  # noqa: F401 - the served demo app
from tests.ui.conftest import bokeh_to_screen, browser_column, model_value, wait_until


def test_patching_from_the_ui_draws_the_logit_difference_per_position(page, served_app, artifacts):
    served, apps = served_app
    app, errors = open_app(page, served, apps)
    page.get_by_text("Patching", exact=True).click()
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Use current prompt (+ MQAR corruption)").click()
    pv = app.patching_view
    wait_until(lambda: pv.corrupted and pv.corrupted != pv.clean, page=page)
    box = page.get_by_label("cell to patch")
    box.fill("blocks.1.out")
    box.press("Enter")
    wait_until(lambda: pv.probe == "blocks.1.out", page=page)
    page.get_by_role("button", name="Patch", exact=True).click()
    wait_until(lambda: pv.result is not None, timeout=30, page=page)
    S = len(app.session.tokens)
    wait_until(lambda: len(browser_column(page, pv.ld_source.id, "patched") or []) == S, page=page)
    wait_until(lambda: page.get_by_text("recovered").count() > 0, page=page)
    page.get_by_role("button", name="Sweep", exact=True).click()
    wait_until(lambda: pv.sweep is not None, timeout=60, page=page)
    wait_until(lambda: len(browser_column(page, pv.sweep_source.id, "value") or []) == pv.sweep.values.size,
               page=page)
    page.screenshot(path=str(artifacts / "dashboard_patching.png"), full_page=True)
    assert not script_errors(errors), errors


def test_the_inspector_shows_c_per_head_and_the_token_at_a_breakpoint(page, served_app, artifacts):
    served, apps = served_app
    app, errors = open_app(page, served, apps)
    page.get_by_text("Debugger", exact=True).click()
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Add breakpoint").click()  # default probe: blocks.0.mlstm.memory
    wait_until(lambda: app.session.debugger_state.get("breakpoints"), page=page)
    page.get_by_role("button", name="Continue").click()
    wait_until(lambda: app.session.step_event is not None and app.session.step_event.name == "blocks.0.mlstm.memory",
               timeout=20, page=page)
    insp = app.debugger_view.inspector
    C = insp.panels["C"]
    wait_until(lambda: len(browser_column(page, C["source"].id, "image") or []) == 1, page=page)
    label = app.session.decode_one(int(app.session.tokens[0]))
    # the figure title (drawn on the canvas) and the details (page text) name the stop's token
    wait_until(lambda: f'at token 0 ("{label}")' in model_value(page, C["figure"].title.id, "text"), page=page)
    wait_until(lambda: page.get_by_text(f"token 0 {label}").count() > 0, page=page)
    # the diverging scale around 0 that the browser draws is the stop's own |C| maximum
    lim = float(abs(app.session.step_event.state["C"]).max())
    wait_until(lambda: model_value(page, C["mapper"].id, "high") == pytest.approx(lim), page=page)
    page.screenshot(path=str(artifacts / "dashboard_inspector.png"), full_page=True)
    assert not script_errors(errors), errors


@pytest.fixture
def deep_app(serve, tmp_path, monkeypatch):
    import xlstm_viz as xv
    from xlstm_viz.config import XLSTMConfig

    import mlx.core as mx

    # built and evaluated before serving (materialised arrays cross threads): the server's first answer then only
    # runs the model, within the serve fixture's time limit on a loaded machine
    deep = xv.XLSTM(XLSTMConfig(embedding_dim=32, num_heads=2, num_blocks=32, vocab_size=130))
    mx.eval(deep.parameters())
    yield from serve_apps(serve, tmp_path, monkeypatch, lambda: deep)  # the same model for every page load


def test_a_32_block_graph_is_a_readable_strip_whose_blocks_are_clickable(page, deep_app, artifacts):
    from xlstm_viz.dashboard.dag_figure import LABEL_ROOM, MAX_COLUMNS

    served, apps = deep_app
    app, errors = open_app(page, served, apps)
    graph = app.model_view.block_graph
    fig_id = graph.figure.id
    wait_until(lambda: abs(model_value(page, graph.x_range.id, "end") - model_value(page, graph.x_range.id, "start")
                           - (MAX_COLUMNS + LABEL_ROOM)) < 1e-9, page=page)
    ids = list(graph.node_source.data["id"])
    x = float(graph.node_source.data["x"][ids.index("blocks.9")])
    y = float(graph.node_source.data["y"][ids.index("blocks.9")])
    for _ in range(5):  # a click during the first layout passes can be lost
        sx, sy = bokeh_to_screen(page, fig_id, x, y)
        page.mouse.click(sx, sy)
        try:
            wait_until(lambda: app.model_view.block == 9, timeout=3, page=page)
            break
        except AssertionError:
            continue
    assert app.model_view.block == 9
    page.screenshot(path=str(artifacts / "dashboard_32_blocks.png"), full_page=False)
    assert not script_errors(errors), errors


def test_top_k_texts_are_drawn_only_while_a_token_column_is_wide_enough_for_them(page, served_app):  # noqa: F811
    from xlstm_viz.dashboard.trace_view import TOPK_TEXT_MIN_PX

    served, apps = served_app
    app, errors = open_app(page, served, apps)
    page.get_by_text("Over time", exact=True).click()
    tv = app.trace_view
    S = len(app.session.tokens)
    wait_until(lambda: len(browser_column(page, tv.topk_source.id, "text") or []) == S * tv.top_k, timeout=60,
               page=page)
    fig_id, text_id = tv.topk_figure.id, tv.topk_text.id

    def px_per_token():
        return model_value(page, fig_id, "inner_width") / (tv.x_range.end - tv.x_range.start)

    # at 1280 px the demo's 40 tokens have room for their texts
    wait_until(lambda: px_per_token() >= TOPK_TEXT_MIN_PX and model_value(page, text_id, "visible") is True,
               page=page)
    # a narrow window squeezes the columns: the texts go, the coloured cells stay
    page.set_viewport_size({"width": 700, "height": 800})
    wait_until(lambda: px_per_token() < TOPK_TEXT_MIN_PX, page=page)
    wait_until(lambda: model_value(page, text_id, "visible") is False, page=page)
    # zooming in on a few tokens brings them back at that width (as few as leave each column twice the minimum)
    few = max(1, int(model_value(page, fig_id, "inner_width") // (2 * TOPK_TEXT_MIN_PX)))
    assert few < S
    page.evaluate("""([id, n]) => { for (const doc of Bokeh.documents) { const r = doc.get_model_by_id(id);
        if (r) { r.start = 0 - 0.5; r.end = n - 0.5; } } }""", [tv.x_range.id, few])
    wait_until(lambda: model_value(page, text_id, "visible") is True, page=page)
    assert not script_errors(errors), errors
