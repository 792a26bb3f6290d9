"""A reload in chromium keeps the page's session: same key, its edits, no 'open in another tab' copy."""

from __future__ import annotations

from tests.ui.app_fixtures import notifications, open_app, script_errors, served_app  # noqa: F401 - served_app is a fixture
from tests.ui.conftest import wait_until


def test_a_reload_keeps_the_session_key_and_its_edits_and_forks_no_copy(page, served_app):  # noqa: F811
    # The reloaded page's session is built while the old page is still connected (chromium closes the old page's
    # websocket only when the new document arrives): the key was taken for a second tab and forked on every reload.
    served, apps = served_app
    app, errors = open_app(page, served, apps)
    key = app.store.key
    wait_until(lambda: f"session={key}" in page.url, page=page)
    app.session.edit_connection("block", None, "blocks.0", "blocks.1", 0).result(timeout=60)
    want = list(app.session.edits)
    for _ in range(2):
        n = len(apps)
        page.reload()
        page.wait_for_selector(".bk-Canvas", timeout=30000)
        wait_until(lambda: len(apps) > n and apps[-1].session.trace is not None and not apps[-1].session.busy,
                   timeout=60, page=page)
        again = apps[-1]
        wait_until(lambda: again._loaded, page=page)
        page.wait_for_timeout(1000)
        assert again.store.key == key and f"session={key}" in page.url
        assert again.session.edits == want
        assert not any("open in another tab" in t for t in notifications(page) + again._notices)
        assert again.session.store is again.store  # this page saves its edits under the key
    again.session.edit_connection("cell", 0, "blocks.0.mlstm.v", "blocks.0.mlstm.memory", -1).result(timeout=60)
    import json

    saved = json.loads(again.store.path.read_text())
    assert [e["key"][0] for e in saved["edits"]] == ["block", "cell"]
    assert not script_errors(errors), errors


def test_a_second_tab_on_an_open_key_works_on_a_copy_and_says_so(page, served_app):  # noqa: F811
    served, apps = served_app
    app, errors = open_app(page, served, apps)
    key = app.store.key
    wait_until(lambda: f"session={key}" in page.url, page=page)
    app.session.edit_connection("block", None, "blocks.0", "blocks.1", 0).result(timeout=60)
    second = page.context.new_page()
    other, errors2 = open_app(second, served, apps, query=f"?session={key}")
    wait_until(lambda: other.store.key != key and f"session={other.store.key}" in second.url, page=second)
    wait_until(lambda: any(f"session {key} is open in another tab" in t for t in notifications(second)), page=second)
    assert other.session.edits == app.session.edits  # the copy starts from the first tab's edits
    assert app.store.key == key and app.session.store is app.store
    other.session.edit_connection("cell", 0, "blocks.0.mlstm.v", "blocks.0.mlstm.memory", -1).result(timeout=60)
    import json

    assert [e["key"][0] for e in json.loads(app.store.path.read_text())["edits"]] == ["block"]
    assert [e["key"][0] for e in json.loads(other.store.path.read_text())["edits"]] == ["block", "cell"]
    second.close()
    assert not script_errors(errors) and not script_errors(errors2), (errors, errors2)
