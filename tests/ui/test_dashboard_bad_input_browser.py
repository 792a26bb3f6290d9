"""Bad input in chromium: a message names the value, the page and its session keep working."""

from __future__ import annotations

from tests.ui.app_fixtures import notifications, open_app, script_errors, served_app  # noqa: F401 - served_app is a fixture
from tests.ui.conftest import wait_until


def test_a_malformed_session_key_gets_a_message_and_a_fresh_working_session(page, served_app, artifacts):  # noqa: F811
    served, apps = served_app
    app, errors = open_app(page, served, apps, query="?session=../../etc/passwd")
    wait_until(lambda: any("session key '../../etc/passwd' in the URL is not valid" in t for t in notifications(page)),
               page=page)
    assert app.store.key != "../../etc/passwd" and app.store.path.parent.name == "sessions"
    wait_until(lambda: f"session={app.store.key}" in page.url, page=page)
    assert page.get_by_text("Traceback").count() == 0
    page.get_by_role("button", name="MQAR example").click()  # the session works
    wait_until(lambda: not app.session.busy and app.session.accuracy == 1.0, page=page)
    page.screenshot(path=str(artifacts / "dashboard_bad_session_key.png"))
    assert not script_errors(errors), errors


def test_an_out_of_range_top_k_is_refused_with_its_value_named(page, served_app):  # noqa: F811
    served, apps = served_app
    app, errors = open_app(page, served, apps)
    page.get_by_text("Over time", exact=True).click()
    box = page.get_by_label("top-k")
    box.fill("50")
    box.press("Enter")
    wait_until(lambda: any("top-k 50 is out of range: allowed 1..10" in t for t in notifications(page)), page=page)
    assert app.trace_view.top_k == 3
    wait_until(lambda: box.input_value() == "3", page=page)
    box.fill("5")
    box.press("Enter")
    wait_until(lambda: app.trace_view.top_k == 5, page=page)
    assert not script_errors(errors), errors


def test_ablating_a_nonexistent_cell_is_refused_in_the_diff_tab(page, served_app):  # noqa: F811
    served, apps = served_app
    app, errors = open_app(page, served, apps)
    page.get_by_text("Diff", exact=True).click()
    box = page.get_by_label("cell to ablate")
    box.fill("blocks.9.mlstm.memory")
    box.press("Enter")
    wait_until(lambda: app.diff_view.ablate_probe == "blocks.9.mlstm.memory", page=page)
    page.get_by_role("button", name="Ablate (zero output)").click()
    wait_until(lambda: any("no cell 'blocks.9.mlstm.memory': block 9 does not exist" in t
                           for t in notifications(page)), page=page)
    assert app.session.ablations() == []
    assert page.get_by_text("blocks.9.mlstm.memory: zero").count() == 0
    assert not script_errors(errors), errors


def test_a_prompt_with_markup_is_named_as_typed_in_the_toast_and_loads_nothing(page, served_app):  # noqa: F811
    # The toast names the refused label; Panel shows a notification's text as HTML, so the label's markup (an
    # image on another host) went into the page and '<pad>' in the list of expected labels vanished.
    served, apps = served_app
    app, errors = open_app(page, served, apps)
    off_host = []
    page.on("request", lambda r: off_host.append(r.url) if not r.url.startswith(served.url) and
            not r.url.startswith(served.url.replace("http", "ws")) and not r.url.startswith("data:") else None)
    label = '<img/src="http://example.invalid/x.png">'
    page.locator("textarea").first.fill(label)
    page.get_by_role("button", name="Run prompt").click()
    wait_until(lambda: any(f"unknown token label '{label}' at position 0; expected '<pad>', '?'" in t
                           for t in notifications(page)), page=page)
    page.wait_for_timeout(500)
    assert off_host == []
    assert not script_errors(errors), errors
