"""Fixtures of the dashboard tests: one demo model per test module, and an app on it whose edits are undone after
each test (the module-scoped model is shared between the tests of a module)."""

import pytest


@pytest.fixture(scope="module")
def model():
    import xlstm_viz.blas  # noqa: F401
    import xlstm_viz as xv

    return xv.load_demo()


@pytest.fixture
def app(model, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    from xlstm_viz.dashboard.app import DashboardApp

    a = DashboardApp(model=model, threaded=False)
    yield a
    a.session.model.interventions.clear()
    a.session.reset_edits(rerun=False)  # undo every edit action through the wirings' own histories
    a.session.close()
