"""What a click costs the page: one message per result, and views on hidden tabs left alone until shown."""

from __future__ import annotations

import json
import time

import numpy as np

from tests.ui.app_fixtures import notifications, open_app, script_errors, served_app  # noqa: F401 - the served app
from tests.ui.conftest import TRAFFIC, browser_column, settle, wait_until

def test_a_result_reaches_the_page_as_one_message_and_a_hidden_tab_catches_up_when_shown(page, served_app):  # noqa: F811
    served, apps = served_app
    page.add_init_script(TRAFFIC)
    app, errors = open_app(page, served, apps)
    from xlstm_viz.dashboard import trace_tables

    tv = app.trace_view
    assert tv.trace is None  # never shown yet: never drawn
    page.get_by_text("Over time", exact=True).click()
    wait_until(lambda: tv.trace is app.session.trace, timeout=60, page=page)
    # The view's probe and stat are read at each comparison: the view sets its trace before it picks the probe
    # for it (TraceView._trace_changed), so values read right after the trace arrives can be the old ones.
    expected = lambda trace: trace_tables.head_time_table(trace, tv.probe, tv.stat)["value"]  # noqa: E731
    before = app.session.trace
    shown = lambda: np.asarray(browser_column(page, tv.probe_source.id, "value"), dtype=np.float64)  # noqa: E731

    def shows(trace) -> bool:
        got, want = shown(), expected(trace)
        return got.shape == want.shape and np.allclose(got, want, rtol=1e-5, atol=1e-6)
    wait_until(lambda: shows(before), timeout=60, page=page)

    page.get_by_text("Diff", exact=True).click()
    box = page.get_by_label("cell to ablate")
    box.fill("blocks.0.mlstm.igate")
    box.press("Enter")
    settle(page)
    page.evaluate("window.__in = []")
    page.get_by_role("button", name="Ablate (zero output)", exact=True).click()
    page.get_by_text("ablations: #1 zero blocks.0.mlstm.igate").first.wait_for(timeout=30000)
    wait_until(lambda: not app.session.busy, timeout=60, page=page)
    settle(page)
    after = app.session.trace
    assert after is not before
    # every figure's new data in one message (one layout in the page), not a message per source
    patches = page.evaluate("window.__in")
    with_data = [p for p in patches if any(k.startswith("ColumnDataChanged") for k in p)]
    assert len(with_data) == 1, json.dumps(patches)[:2000]
    # the edit is said in the toast too
    wait_until(lambda: any(t.startswith("ablation #1 zero blocks.0.mlstm.igate") for t in notifications(page)),
               page=page)

    # the Over-time tab was hidden: its figures still show the run before the ablation ...
    assert not np.allclose(expected(after), expected(before))
    assert "trace" in app.feeds["Over time"].stale
    assert shows(before)
    # ... and show the ablated run once the tab is opened
    page.get_by_text("Over time", exact=True).click()
    wait_until(lambda: shows(after), timeout=60, page=page)
    assert app.feeds["Over time"].stale == ()
    assert not script_errors(errors), errors


def test_a_large_ncps_build_in_one_session_leaves_another_session_responsive(page, served_app):  # noqa: F811
    served, apps = served_app
    app_a, errors = open_app(page, served, apps)
    other = page.context.new_page()
    app_b, errors_b = open_app(other, served, apps)
    assert app_b is not app_a
    other.get_by_text("Diff", exact=True).click()
    box = other.get_by_label("cell to ablate")
    box.fill("blocks.0.mlstm.igate")
    box.press("Enter")
    other.wait_for_timeout(500)

    # the largest wiring the builder allows: seconds of work (synapses drawn one by one, dense tables)
    page.get_by_text("NCPS builder (detached)", exact=True).click()
    view = app_a.wiring_view
    view.param.update(units=1024, output_dim=16, input_dim=256)
    page.wait_for_timeout(1000)
    page.get_by_role("button", name="Build wiring", exact=True).click()
    wait_until(lambda: view._message.object.startswith("_building AutoNCP(1024"), timeout=60, page=page)

    # Meanwhile the other session's click reaches the server and its model re-runs. The server-side times of the
    # click's arrival and of the build's end are compared, not what the page shows when: on a loaded 2-core machine
    # the other session's re-run may take longer than the build itself, but a click that arrives only after the
    # build means the build held the server thread.
    times = {}
    app_b.session.param.watch(lambda e: times.setdefault("click", time.monotonic()) if e.new else None, "busy")
    view.param.watch(lambda e: times.setdefault("built", time.monotonic()), "wiring")
    other.get_by_role("button", name="Ablate (zero output)", exact=True).click()
    wait_until(lambda: "click" in times, timeout=60, page=other)
    other.get_by_text("ablations: #1 zero blocks.0.mlstm.igate").first.wait_for(timeout=60000)
    assert times["click"] < times.get("built", float("inf")), "the other session's click waited for the build"

    wait_until(lambda: view.wiring.units == 1024, timeout=120, page=page)
    page.get_by_text("1024 neurons, 256 sensory inputs", exact=False).first.wait_for(timeout=60000)
    assert view.last_edit == "built AutoNCP(1024, 16) on 256 inputs"
    assert not script_errors(errors) and not script_errors(errors_b), (errors, errors_b)
