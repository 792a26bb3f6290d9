"""The served dashboard in chromium: loads cleanly, clicks edit the model, the debugger and diff views react."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from tests.ui.app_fixtures import served_app  # noqa: F401 - the served demo app, one model per page
from tests.ui.conftest import bokeh_to_screen, browser_column, console_errors, wait_until
from xlstm_viz.dashboard.model_view import matrix_cell_center

ROOT = Path(__file__).resolve().parents[2]


def open_app(page, served, apps, query=""):
    errors = console_errors(page)
    page.goto(served.url + query)
    page.wait_for_selector(".bk-Canvas", timeout=30000)
    wait_until(lambda: apps and apps[-1].session.trace is not None and not apps[-1].session.busy, timeout=30, page=page)
    page.wait_for_timeout(800)
    return apps[-1], errors


def real_errors(errors):
    return errors.real()


def test_page_loads_with_no_console_errors(page, served_app, artifacts):
    served, apps = served_app
    app, errors = open_app(page, served, apps)
    assert "xlstm-viz" in page.title()
    page.screenshot(path=str(artifacts / "dashboard_model.png"), full_page=True)
    assert not real_errors(errors), errors
    if os.environ.get("XLSTM_VIZ_UPDATE_SCREENSHOT") == "1":  # refresh the README picture on request only
        shutil.copy(artifacts / "dashboard_model.png", ROOT / "assets" / "screenshots" / "dashboard.png")


def test_selecting_a_connection_cell_and_setting_it_flipped_changes_the_overlay(page, served_app, artifacts):
    served, apps = served_app
    app, errors = open_app(page, served, apps)
    mv = app.model_view
    src, dst = "blocks.0.mlstm.igate", "blocks.0.mlstm.memory"
    memory = mv.cell_graph.names.index("blocks.0.mlstm.memory")
    before = float(mv.cell_graph.node_source.data["value"][memory])
    fig_id = mv.matrix_figure.id
    x, y = matrix_cell_center(mv._matrix, src, dst)
    # A click during the page's first layout passes can be lost; retry until the cell is selected.
    for _ in range(5):
        sx, sy = bokeh_to_screen(page, fig_id, x, y)
        page.mouse.move(sx, sy)
        page.wait_for_timeout(300)
        page.mouse.click(sx, sy)
        try:
            wait_until(lambda: mv.selected == ("cell", 0, src, dst), timeout=3, page=page)
            break
        except AssertionError:
            continue
    assert mv.selected == ("cell", 0, src, dst) and app.session.edits == []
    page.get_by_role("button", name="Set flipped").click()
    wait_until(lambda: len(app.session.edits) > 0, page=page)
    assert len(app.session.edits) == 1 and app.session.edits[0][2:4] == (src, dst), app.session.edits
    assert app.session.edits[-1][4] == -1  # on -> flipped
    # flipping the input gate changes what the memory cell holds: its overlay value moves
    wait_until(lambda: app.session.trace is not None and not app.session.busy
               and float(mv.cell_graph.node_source.data["value"][memory]) != before, timeout=20, page=page)
    want = float(mv.cell_graph.node_source.data["value"][memory])
    assert np.isfinite(want)

    def shown():
        values = browser_column(page, mv.cell_graph.node_source.id, "value")
        return None if values is None else values[memory]

    wait_until(lambda: abs(shown() - want) < 1e-6 * max(1.0, abs(want)), page=page)
    assert mv.matrix_figure.id == fig_id  # updated in place, not rebuilt
    page.screenshot(path=str(artifacts / "dashboard_after_flip.png"), full_page=True)
    assert not real_errors(errors), errors


def test_a_debugger_step_moves_the_highlight(page, served_app, artifacts):
    served, apps = served_app
    app, errors = open_app(page, served, apps)
    page.get_by_text("Debugger", exact=True).click()
    page.wait_for_timeout(500)
    step = page.get_by_role("button", name="Step", exact=True)
    step.click()
    wait_until(lambda: app.session.step_event is not None, page=page)
    first = app.session.step_event.name
    step.click()
    wait_until(lambda: app.session.step_event is not None and app.session.step_event.index >= 1, page=page)
    second = app.session.step_event.name
    assert first != second

    def ring():
        ids = browser_column(page, app.debugger_view.cell_graph.highlight_source.id, "id")
        return ids[0] if ids else None

    wait_until(lambda: ring() == second, page=page)
    page.screenshot(path=str(artifacts / "dashboard_debugger.png"), full_page=True)
    assert not real_errors(errors), errors


def test_the_diff_view_shows_a_change_after_an_ablation(page, served_app, artifacts):
    served, apps = served_app
    app, errors = open_app(page, served, apps)
    page.get_by_text("Diff", exact=True).click()
    page.wait_for_timeout(500)
    box = page.get_by_label("cell to ablate")
    box.fill("blocks.0.mlstm.out")
    box.press("Enter")
    wait_until(lambda: app.diff_view.ablate_probe == "blocks.0.mlstm.out", page=page)
    page.get_by_role("button", name="Ablate (zero output)").click()
    wait_until(lambda: "zero" in " ".join(app.session.ablations()), page=page)
    wait_until(lambda: page.get_by_text("top-1 prediction changed").count() > 0, timeout=20, page=page)
    wait_until(lambda: max(app.diff_view.bar_source.data["change"]) > 0, page=page)
    page.screenshot(path=str(artifacts / "dashboard_diff.png"), full_page=True)
    assert not real_errors(errors), errors


def test_wiring_edits_survive_a_page_reload(page, served_app):
    served, apps = served_app
    app, _ = open_app(page, served, apps)
    app.session.edit_connection("cell", 0, "blocks.0.mlstm.fgate", "blocks.0.mlstm.memory", 0).result()
    wait_until(lambda: "session=" in page.url, page=page)
    url = page.url
    page.goto(url)
    page.wait_for_selector(".bk-Canvas", timeout=30000)
    wait_until(lambda: len(apps) >= 2 and apps[-1].session.edits, timeout=30, page=page)
    assert apps[-1].session.edits[-1] == ("cell", 0, "blocks.0.mlstm.fgate", "blocks.0.mlstm.memory", 0)
    names, conns = apps[-1].session.graph("cell", 0)
    assert ("blocks.0.mlstm.fgate", "blocks.0.mlstm.memory", 0) in conns
