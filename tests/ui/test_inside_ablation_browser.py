"""The Diff tab's "inside the recurrence" ablation on the hybrid demo (?model=hybrid), in chromium: offered only for a
neuron cell, and ticking it changes the result (an inter neuron zeroed at its output changes nothing downstream; zeroed
in the recurrence it reaches the motor neurons and the logits); it is saved with the session and in the snippet."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ui.app_fixtures import script_errors
from tests.ui.conftest import console_errors, wait_until


@pytest.fixture
def bundled_app(serve, tmp_path, monkeypatch):
    """(Served, apps): the app as `xlstm-viz dashboard` serves it, the model picked by the URL's ?model=."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    import panel as pn

    from xlstm_viz.dashboard.app import DashboardApp

    pn.extension()
    apps = []

    def factory():
        app = DashboardApp()
        apps.append(app)
        return app.template()

    yield serve(factory), apps
    for app in apps:
        app.session.close()


def inter_neuron_feeding_commands(model) -> int:
    """An inter neuron of the hybrid's NCP with a synapse onto a command neuron (so zeroing its state must move the
    motor neurons), none onto a motor neuron (so zeroing its output alone moves nothing downstream)."""
    from xlstm_viz.model.ncp_slstm_block import layer_ids

    wiring = model.blocks[0].wiring
    A, M = wiring.adjacency_matrix, wiring.output_dim
    lo, hi = layer_ids(wiring, 0)
    return next(i for i in range(lo, hi) if np.abs(A[i, M:]).sum() > 0 and not np.abs(A[i, :M]).any())


def mean_kl(app) -> float:
    return float(np.mean(app.session.result.logit_change["kl"]))


def checkbox(page, text):
    """The checkbox input whose widget says `text` (Bokeh draws the input and its text side by side in one shadow
    root, with no <label> that would name it)."""
    boxes = page.locator("input[type=checkbox]")
    for k in range(boxes.count()):
        if boxes.nth(k).evaluate("(e, t) => e.getRootNode().textContent.includes(t)", text):
            return boxes.nth(k)
    raise AssertionError(f"no checkbox says {text!r}")


def fill(page, label, text):
    box = page.get_by_label(label)
    box.fill(text)
    box.press("Enter")


def test_ticking_inside_the_recurrence_changes_the_ablation_of_a_neuron(page, bundled_app, artifacts):
    served, apps = bundled_app
    errors = console_errors(page)
    page.goto(served.url + "?model=hybrid")
    page.wait_for_selector(".bk-Canvas", timeout=30000)
    wait_until(lambda: apps and apps[-1].session.trace is not None and not apps[-1].session.busy, timeout=60,
               page=page)
    app = apps[-1]
    assert app.session.config.layer_types() == ["cfc", "mlstm"]
    neuron = inter_neuron_feeding_commands(app.session.model)
    page.get_by_text("Diff", exact=True).click()
    page.wait_for_timeout(500)
    inside = page.get_by_text("inside the recurrence", exact=True)  # the checkbox's own text
    assert inside.count() == 0 or not inside.is_visible()  # the default cell (an mLSTM gate) has no neuron recurrence
    fill(page, "cell to ablate", "blocks.0.ncp.neurons")
    wait_until(lambda: inside.count() == 1 and inside.is_visible(), page=page)
    fill(page, "heads", str(neuron))
    wait_until(lambda: app.diff_view.ablate_heads == str(neuron), page=page)

    ablate = page.get_by_role("button", name="Ablate (zero output)")
    ablate.click()  # not ticked: the neuron's output is zeroed downstream, which the motor slice does not read
    wait_until(lambda: len(app.session.ablations()) == 1 and not app.session.busy, timeout=30, page=page)
    assert "inside" not in app.session.ablations()[0]
    outside_kl = mean_kl(app)
    page.get_by_role("button", name="Clear ablations").click()
    wait_until(lambda: not app.session.ablations() and not app.session.busy, timeout=30, page=page)

    checkbox(page, "inside the recurrence").click()
    wait_until(lambda: app.diff_view.ablate_inside, page=page)
    ablate.click()
    wait_until(lambda: len(app.session.ablations()) == 1 and not app.session.busy, timeout=30, page=page)
    assert "inside the recurrence" in app.session.ablations()[0]
    inside_kl = mean_kl(app)
    assert outside_kl == 0.0 and inside_kl > 1e-6, (outside_kl, inside_kl)
    listed = page.get_by_text("ablations: #", exact=False)
    wait_until(lambda: "inside the recurrence" in listed.inner_text(), page=page)  # the Diff tab lists it so
    page.screenshot(path=str(artifacts / "diff_inside_ablation.png"), full_page=True)

    saved = app.session.state_dict()["ablations"]  # what the session file holds
    assert saved == [{"probe": "blocks.0.ncp.neurons", "kind": "zero", "value": None, "tokens": None,
                      "heads": [neuron], "inside": True}]
    assert "inside=True" in app.python_snippet()
    fill(page, "cell to ablate", "blocks.1.mlstm.igate")  # a cell without a neuron recurrence: the box goes away
    wait_until(lambda: not inside.is_visible(), page=page)
    assert not script_errors(errors), errors
