"""Shared pieces of the dashboard browser tests: a served app on the demo model and a page opened on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ui.conftest import console_errors, wait_until

ROOT = Path(__file__).resolve().parents[2]


def load_test_model():
    import xlstm_viz.blas  # noqa: F401
    import xlstm_viz as xv

    return xv.load_demo()


def serve_apps(serve, tmp_path, monkeypatch, make_model):
    """Generator for fixtures: yields (Served, apps), where every page load builds one DashboardApp on
    `make_model()` and apps[-1] is the newest; afterwards each page's session is closed."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    import panel as pn

    from xlstm_viz.dashboard.app import DashboardApp

    pn.extension()  # no notifications asked for: the app turns them on for its own sessions
    apps = []

    def factory():
        app = DashboardApp(model=make_model())
        apps.append(app)
        return app.template()

    yield serve(factory), apps
    for app in apps:  # stop each page's model thread, as the server does when a tab closes
        app.session.close()


@pytest.fixture
def served_app(serve, tmp_path, monkeypatch):
    """(Served, apps) of the demo model, a fresh copy per page load."""
    yield from serve_apps(serve, tmp_path, monkeypatch, load_test_model)


def open_app(page, served, apps, query="", count=None):
    """Open the page and wait for its first run; returns (app, console errors)."""
    errors = console_errors(page)
    n = len(apps) if count is None else count
    page.goto(served.url + query)
    page.wait_for_selector(".bk-Canvas", timeout=30000)
    wait_until(lambda: len(apps) > n and apps[-1].session.trace is not None and not apps[-1].session.busy,
               timeout=30, page=page)
    page.wait_for_timeout(800)
    return apps[-1], errors


def select_values(page) -> list[str]:
    """Current values of every <select> on the page (Panel renders them in shadow roots; locators pierce them)."""
    return page.locator("select").evaluate_all("els => els.map(e => e.value)")


def notifications(page) -> list[str]:
    """Texts of the toasts now shown: Panel's notifications (errors, warnings) and the edit toast."""
    return page.locator(".notyf__message").all_inner_texts() + page.locator(".xv-toast").all_inner_texts()


def script_errors(errors) -> list[str]:
    """Console errors and page exceptions other than failed resource loads.

    Failed loads of off-host resources (fonts, the notification library's CDN files) are the offline
    work's to fail on, in its own test; these tests are about what the app's scripts do.
    """
    return [e for e in errors.real() if not e.startswith("Failed to load resource")]
