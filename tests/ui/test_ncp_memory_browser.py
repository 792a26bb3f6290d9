"""The live NCPS tab on a model whose NCP neurons are sLSTM memory cells (`ncp_slstm`), in chromium: a synapse
click flips the synapse's sign in the running model (these neurons use polarity) and the overlays follow."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ui.app_fixtures import script_errors, serve_apps
from tests.ui.conftest import bokeh_to_screen, browser_column, console_errors, wait_until
from xlstm_viz.dashboard import wiring_tables


def memory_model():
    from tests.test_ncps_blocks import hybrid
    from xlstm_viz.tasks import MQARTask

    model = hybrid(blocks=("ncp_slstm", "mlstm"))
    model.task = MQARTask(num_keys=9, num_values=9)
    return model


@pytest.fixture
def memory_app(serve, tmp_path, monkeypatch):
    yield from serve_apps(serve, tmp_path, monkeypatch, memory_model)


def test_a_click_in_the_live_ncps_tab_flips_an_slstm_neurons_synapse(page, memory_app, artifacts):
    served, apps = memory_app
    errors = console_errors(page)
    page.goto(served.url)
    page.wait_for_selector(".bk-Canvas", timeout=30000)
    wait_until(lambda: apps and apps[-1].session.trace is not None and apps[-1].ncps_live is not None
               and not apps[-1].session.busy, timeout=60, page=page)
    app = apps[-1]
    live = app.ncps_live
    page.locator(".bk-tab", has_text="NCPS (live model)").first.click()
    # a hidden tab's views are drawn when it is first shown (tab_feed.py): the score comes then
    wait_until(lambda: live.score is not None, timeout=60, page=page)
    page.wait_for_timeout(1500)
    assert page.get_by_text("signs its weight into the cell input z", exact=False).count() > 0
    view = live.wiring_view
    nodes_before = browser_column(page, view.node_source.id, "value")
    wiring = app.session.model.blocks[0].wiring
    src, dst = map(int, np.argwhere(wiring.adjacency_matrix[:, : wiring.output_dim] > 0)[0])
    x, y = wiring_tables.cell_center(view._image, "neuron", src, dst)
    sx, sy = bokeh_to_screen(page, view.heatmap_figure.id, x, y)
    page.mouse.click(sx, sy)
    wait_until(lambda: int(wiring.adjacency_matrix[src, dst]) == -1, timeout=20, page=page)
    wait_until(lambda: browser_column(page, view.node_source.id, "value") != nodes_before, timeout=30, page=page)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(artifacts / "ncp_slstm_live.png"), full_page=True)
    for tab, name in (("Model", "model_tab"), ("Over time", "over_time"), ("Debugger", "debugger")):
        page.locator(".bk-tab", has_text=tab).first.click()
        page.wait_for_timeout(2500)
        page.screenshot(path=str(artifacts / f"ncp_slstm_{name}.png"), full_page=True)
    assert not script_errors(errors), errors
