"""A new session's page is built with one walk of its Bokeh document, and the document still indexes every model."""

from __future__ import annotations

import panel as pn
from bokeh.document import Document

import xlstm_viz as xv
from xlstm_viz.dashboard.app import DashboardApp


def test_a_new_sessions_page_indexes_its_models_once_and_completely():
    pn.extension()
    app = DashboardApp(model=xv.load_demo(), threaded=False)
    try:
        doc = Document()
        walks = []
        recompute = doc.models.recompute

        def counted():  # the real index update, counted
            walks.append(1)
            return recompute()

        doc.models.recompute = counted
        app.template().server_doc(doc)  # what Panel's server calls for a template
        assert len(doc.roots) >= 7
        assert len(walks) == 1, f"the document was walked {len(walks)} times"
        reachable = {m.id: m for root in doc.roots for m in root.references()}
        assert len(reachable) > 1000  # the whole app, every tab
        missing = [i for i, m in reachable.items() if doc.get_model_by_id(i) is not m]
        assert not missing, f"{len(missing)} models are not in the document's index"
    finally:
        app.session.close()
