"""Typed prompts in chromium: the run finishes in the browser too, and the probe selector keeps its probe."""

from __future__ import annotations

import pytest

from tests.ui.app_fixtures import open_app, select_values, script_errors, served_app  # noqa: F401 - served_app is a fixture
from tests.ui.conftest import model_value, wait_until


@pytest.mark.parametrize("prompt", ["K3 V7 ? K3", "5 6 7 8"])
def test_a_typed_prompt_finishes_in_the_browser_and_keeps_the_probe(page, served_app, prompt, artifacts):  # noqa: F811
    served, apps = served_app
    # the status line's texts as the page received them, in order (said on failure: lost, or out of order)
    received = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: received.extend(
        t for t in ("running...", "ran 4 tokens") if isinstance(f, str) and t in f)))
    app, errors = open_app(page, served, apps)
    page.get_by_text("Over time", exact=True).click()
    # a hidden tab's views are drawn when it is first shown (tab_feed.py)
    wait_until(lambda: app.trace_view.probe == "blocks.0.mlstm.h", page=page)
    probe = app.trace_view.probe
    wait_until(lambda: probe in select_values(page), page=page)
    page.locator("textarea").first.fill(prompt)
    page.get_by_role("button", name="Run prompt").click()
    # `tokens` is set before the run is queued (and `busy` right after), so the server's own word that the run is
    # done is its status line; waiting on tokens and busy alone could start the page's clock before the run did
    wait_until(lambda: app.session.status.startswith("ran 4 tokens") and not app.session.busy, timeout=30,
               page=page)
    # the browser shows the finished run (it stayed at "running..." when results were applied off the doc thread)
    try:
        wait_until(lambda: page.get_by_text("ran 4 tokens").count() == 1, page=page)
    except AssertionError as exc:
        models = [(m.id, m.text) for m, _ in app._status._models.values()]
        shown = [model_value(page, i, "text") for i, _ in models]
        raise AssertionError(f"the server says {app._status.object!r} (its Bokeh models: {models}); the page's "
                             f"models hold {shown} and it shows {page.get_by_text('ran ').all_inner_texts()} and "
                             f"{page.get_by_text('running').all_inner_texts()}; status texts received in order: "
                             f"{received}") from exc
    assert page.get_by_text("running...").count() == 0
    # a typed prompt has no MQAR targets: no recall accuracy is claimed for it, also on the Model tab once it is
    # shown (a hidden tab catches up when shown, tab_feed.py)
    page.get_by_text("Model", exact=True).click()
    wait_until(lambda: page.get_by_text("recall accuracy").count() == 0, page=page)
    page.get_by_text("Over time", exact=True).click()
    assert app.trace_view.probe == probe
    wait_until(lambda: probe in select_values(page), page=page)
    page.screenshot(path=str(artifacts / f"dashboard_prompt_{prompt.split()[0]}.png"))
    assert not script_errors(errors), errors
