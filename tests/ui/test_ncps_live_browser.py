"""The NCPS tab on the running hybrid model, in chromium: a synapse click changes the overlays and the task score."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ui.app_fixtures import script_errors, serve_apps
from tests.ui.conftest import bokeh_to_screen, browser_column, console_errors, wait_until
from xlstm_viz.dashboard import wiring_tables


def strongest_motor_synapse(samples: int = 128):
    """The command -> motor synapse whose removal moves the hybrid's task score most (measured on its own copy)."""
    import xlstm_viz
    from xlstm_viz.dashboard.ncps_live import task_score

    model = xlstm_viz.load_demo(name="hybrid")
    wiring = model.blocks[0].wiring
    base = task_score(model, model.task, 8, samples)
    best = None
    for src, dst in np.argwhere(wiring.adjacency_matrix[:, : wiring.output_dim] != 0)[:8]:
        wiring.set_polarity(int(src), int(dst), 0)
        drop = base - task_score(model, model.task, 8, samples)
        wiring.undo()
        if best is None or drop > best[0]:
            best = (drop, int(src), int(dst))
    return best


@pytest.fixture
def hybrid_app(serve, tmp_path, monkeypatch):
    import xlstm_viz

    yield from serve_apps(serve, tmp_path, monkeypatch, lambda: xlstm_viz.load_demo(name="hybrid"))


def test_a_synapse_click_in_the_live_ncps_tab_changes_overlays_and_task_score(page, hybrid_app, artifacts):
    drop, src, dst = strongest_motor_synapse()
    assert drop > 0, "no command -> motor synapse of the hybrid moves its task score"
    served, apps = hybrid_app
    errors = console_errors(page)
    page.goto(served.url)
    page.wait_for_selector(".bk-Canvas", timeout=30000)
    wait_until(lambda: apps and apps[-1].session.trace is not None and not apps[-1].session.busy, timeout=60,
               page=page)
    app = apps[-1]
    live = app.ncps_live
    page.locator(".bk-tab", has_text="NCPS (live model)").first.click()
    # a hidden tab's views are drawn when it is first shown (tab_feed.py): the score comes then
    wait_until(lambda: live.score is not None, timeout=60, page=page)
    page.wait_for_timeout(1500)
    view = live.wiring_view
    nodes_before = browser_column(page, view.node_source.id, "value")
    strip_before = browser_column(page, view.strip_source.id, "value")
    score_before = live.score
    assert nodes_before is not None and any(v == v for v in nodes_before)  # the activity overlay reached the page
    page.screenshot(path=str(artifacts / "ncps_live_before.png"), full_page=True)
    # click that synapse's heatmap cell: the model thread edits the wiring and re-runs
    x, y = wiring_tables.cell_center(view._image, "neuron", src, dst)
    sx, sy = bokeh_to_screen(page, view.heatmap_figure.id, x, y)
    page.mouse.click(sx, sy)
    wait_until(lambda: int(app.session.model.blocks[0].wiring.adjacency_matrix[src, dst]) == 0, timeout=20, page=page)
    wait_until(lambda: live.score is not None and live.score != score_before, timeout=60, page=page)
    assert live.score < score_before
    wait_until(lambda: browser_column(page, view.node_source.id, "value") != nodes_before, timeout=20, page=page)
    assert browser_column(page, view.strip_source.id, "value") != strip_before
    # the page shows the new score and what the toggle did (the per-neuron diff)
    wait_until(lambda: page.get_by_text(f"{live.score:.1%}").count() > 0, timeout=20, page=page)
    change = browser_column(page, live.diff_source.id, "change")
    assert change is not None and max(abs(c) for c in change) > 0
    page.screenshot(path=str(artifacts / "ncps_live_after.png"), full_page=True)
    assert not script_errors(errors), errors
