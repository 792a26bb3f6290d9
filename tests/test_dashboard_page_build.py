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
        template = app.template()
        template.server_doc(doc)  # what Panel's server calls for a template
        assert len(doc.roots) >= 7
        assert len(walks) == 1, f"the document was walked {len(walks)} times"
        reachable = {m.id: m for root in doc.roots for m in root.references()}
        assert len(reachable) > 300  # the sidebar and the first tab (the other tabs join when first shown)
        missing = [i for i, m in reachable.items() if doc.get_model_by_id(i) is not m]
        assert not missing, f"{len(missing)} models are not in the document's index"
        # a tab shown for the first time puts its views into the page, and the index has them too
        tabs = template.main[0]
        tabs.active = list(tabs._names).index("Over time")
        shown = {m.id: m for root in doc.roots for m in root.references()}
        assert len(shown) > len(reachable) + 100
        missing = [i for i, m in shown.items() if doc.get_model_by_id(i) is not m]
        assert not missing, f"{len(missing)} models of the shown tab are not in the document's index"
    finally:
        app.session.close()
