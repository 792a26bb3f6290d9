"""The dashboard uses Panel's current API: building every view raises no (Pending)DeprecationWarning."""

from __future__ import annotations

import warnings

import pytest


@pytest.fixture(scope="module")
def model():
    import xlstm_viz.blas  # noqa: F401
    import xlstm_viz as xv

    return xv.load_demo()


def test_building_the_whole_app_and_its_views_warns_nothing_deprecated(model, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    import panel as pn
    from bokeh.document import Document

    from xlstm_viz.dashboard.app import DashboardApp

    with warnings.catch_warnings():
        # `name` -> `label`, `button_type` -> `color` and friends go away in Panel 2.0
        warnings.simplefilter("error", PendingDeprecationWarning)
        warnings.simplefilter("error", DeprecationWarning)
        app = DashboardApp(model=model, threaded=False)
        app.template()
        pn.panel(app).get_root(Document())  # every tab's widgets are built here
        app.session.ablate("blocks.0.mlstm.out")
        app.session.clear_ablations()
    app.session.close()


def test_the_dashboard_refuses_a_model_and_a_model_path_together(model, tmp_path, monkeypatch):
    # Given both, it ran `model` (the demo) while its bundled-model selector said "hybrid"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    import xlstm_viz as xv

    with pytest.raises(ValueError, match=r"a model or a model_path, not both \(model_path='hybrid'\)"):
        xv.dashboard(model=model, model_path="hybrid")
