"""Offline: the served app (every tab, both themes) and the notebooks' outputs rendered to HTML ask no host other than
localhost for anything, and load without console errors.

Every request leaves through a route that lets localhost/127.0.0.1 through and aborts (and records) everything else,
so the test catches an attempt even on a machine that is online.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from nbconvert import HTMLExporter

from tests.notebook_runs import NOTEBOOKS, executed
from tests.ui.conftest import console_errors, wait_until
from tests.ui.app_fixtures import served_app  # noqa: F401 - the served demo app, one model per page

ROOT = Path(__file__).resolve().parents[2]
LOCAL_HOSTS = {"localhost", "127.0.0.1"}
TABS = ["Model", "Over time", "Debugger", "Diff", "NCPS builder (detached)", "Export"]
CDN_MARKERS = ("cdn.bokeh.org", "cdn.holoviz.org", "cdn.jsdelivr.net", "unpkg.com", "fonts.googleapis.com",
               "cdnjs.cloudflare.com", "use.fontawesome.com")


def block_remote(page) -> list[str]:
    """Abort every request to a host other than localhost; return the list the aborted URLs are appended to."""
    remote: list[str] = []

    def route(r):
        url = r.request.url
        if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).hostname in LOCAL_HOSTS:
            r.continue_()
        else:
            remote.append(url)
            r.abort("internetdisconnected")

    page.route("**/*", route)
    return remote


@pytest.mark.parametrize("theme", ["default", "dark"])
def test_the_served_app_requests_nothing_but_localhost_on_any_tab(page, served_app, theme, artifacts):
    served, apps = served_app
    remote = block_remote(page)
    errors = console_errors(page)
    page.goto(served.url + ("?theme=dark" if theme == "dark" else ""))
    page.wait_for_selector(".bk-Canvas", timeout=30000)
    wait_until(lambda: apps and apps[-1].session.trace is not None and not apps[-1].session.busy, timeout=30, page=page)
    for tab in TABS:
        page.locator(".bk-tab", has_text=tab).first.click()
        page.wait_for_timeout(700)
        assert page.locator(".bk-tab.bk-active", has_text=tab).count() == 1, tab
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(artifacts / f"offline_served_{theme}.png"), full_page=True)
    assert remote == [], remote
    assert errors == [], errors


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/favicon.ico":  # the browser asks for it; a 404 would be a console error of this harness
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_an_executed_notebook_rendered_to_html_works_offline(page, path, tmp_path, artifacts):
    nb, _ = executed(path)  # the run tests/test_dashboard_notebooks.py checks, shared
    # nbconvert's own page links require.js and MathJax from cdnjs: neither is needed by these outputs.
    html, _ = HTMLExporter(template_name="lab", require_js_url="", mathjax_url="").from_notebook_node(nb)
    (tmp_path / "nb.html").write_text(html, encoding="utf-8")
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        remote = block_remote(page)
        errors = console_errors(page)
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/nb.html")
        page.wait_for_load_state("networkidle")
        try:  # the Panel outputs render their figures from the BokehJS embedded in the page
            wait_until(lambda: page.evaluate("window.Bokeh ? Bokeh.documents.length : 0") > 0
                       and page.locator(".bk-Canvas").count() > 0, timeout=20, page=page)
            rendered = True
        except AssertionError:
            rendered = False
        page.screenshot(path=str(artifacts / f"offline_{path.stem}.png"), full_page=True)
        assert remote == [], remote
        assert errors == [], errors
        assert rendered, f"{path.name}: no Bokeh figure rendered"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_saved_notebook_outputs_link_no_cdn(path):
    outputs = [o for c in json.loads(path.read_text(encoding="utf-8"))["cells"] for o in c.get("outputs", [])]
    text = json.dumps(outputs)
    assert not [m for m in CDN_MARKERS if m in text], f"{path.name} has saved outputs that load from a CDN"
