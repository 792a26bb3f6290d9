"""Offline pages: every script, stylesheet and font the dashboard needs comes from the local server or the notebook.

Researchers often work on machines without internet, so no page or notebook output of xlstm-viz may ask a CDN for
anything (tests/ui/test_offline_browser.py fails on any request to a host other than localhost).

- Served app: Panel serves BokehJS, Panel and the bundled Fast components from its own /static routes (resources
  "server", Panel's default for `pn.serve` / `panel serve`). The one remote resource left is the Fast design's
  Google-Fonts stylesheet for Open Sans; `OfflineFast` drops it (the template falls back to the system sans-serif,
  or to Open Sans where it is installed locally).
- Notebooks: `import xlstm_viz` sets PANEL_INLINE=1 unless the user set it, so that `pn.extension()` embeds BokehJS,
  Panel and their stylesheets in the output (a few MB per notebook) instead of linking cdn.bokeh.org and
  cdn.holoviz.org. Export PANEL_INLINE=0 before the import to get the small CDN-linked outputs back.
- Live notebook updates: Panel inlines the stylesheets of a notebook output when it first renders, but the updates
  it sends over the Jupyter comm afterwards (a Markdown pane's new text, an alert, a new child) re-link
  loading.css, markdown.css, alerts.css and the design's theme/default.css and theme/native.css on cdn.holoviz.org
  (Panel 1.9: `Syncable._process_param_change` and `Design._patch_modifiers` build `ImportedStyleSheet`s on
  CDN_DIST, and only a served document's `dist_url` rewrites them). `_inline_comm_stylesheets` turns those into
  inline stylesheets read from Panel's own dist folder, for every document that is not a served session
  (tests/ui/test_jupyterlab_offline.py runs the notebooks in a live JupyterLab with the network cut).
"""

from __future__ import annotations

import weakref

from bokeh.models import ImportedStyleSheet, InlineStyleSheet
from panel.config import config
from panel.io.resources import CDN_DIST, DIST_DIR, LOCAL_DIST
from panel.io.state import state
from panel.reactive import Syncable
from panel.theme.fast import Fast


class OfflineFast(Fast):
    """The Fast design without its remote font stylesheet (`//fonts.googleapis.com/css?family=Open+Sans`)."""

    _resources = {kind: res for kind, res in Fast._resources.items() if kind != "font"}

    def params(self, viewable, doc=None):
        """The design's parameter values for `viewable`, as the template rendered it first.

        Panel renders a template's components "not isolated" (the page loads the theme's base stylesheet,
        theme/default.css, once), but `Design.params`, which a pane's update goes through (`Pane._update`: a
        Markdown pane's new text), asks for the isolated set, with default.css. So every Markdown/HTML pane's first
        update changed its `stylesheets`: a patch to the page, and a change Bokeh answers by re-walking every model
        of the document (~1,700; 160-450 ms of server CPU per pane, the first click on each tab of each session;
        counted in `benchmarks/dashboard_breakdown.py`). The set for a template's page is the same as at first
        render. `OfflineFast` is only used as the served template's design."""
        if doc is None:
            cache = {}
        else:
            cache = state._stylesheets.setdefault(doc, {})
        modifiers, child_modifiers = self._get_modifiers(viewable, theme=self.theme, isolated=False)
        self._patch_modifiers(doc, modifiers, cache)
        return modifiers, child_modifiers

    @classmethod
    def _resolve_resource(cls, resource_type, resource, cdn=False):
        # Panel prefixes the design's local files with the class name; the Fast bundle is installed under "fast/".
        prefix = f"{cls.__name__.lower()}/"
        if resource.startswith(prefix):
            resource = "fast/" + resource[len(prefix):]
        return super()._resolve_resource(resource_type, resource, cdn=cdn)


# One inline copy per imported sheet: Panel shares an ImportedStyleSheet per document and URL, so sharing the inline
# copy too keeps the models Panel compares by identity (Design._apply_params) equal and the comm messages small.
_INLINED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _inline(sheet):
    if not isinstance(sheet, ImportedStyleSheet):
        return sheet
    if sheet not in _INLINED:
        url = str(sheet.url).split("?")[0]
        # A sheet built outside Panel's notebook resource mode (a callback) gets the server's LOCAL_DIST path, which
        # Panel later rewrites to CDN_DIST for a notebook document; both name a file of Panel's dist folder.
        for prefix in (CDN_DIST, LOCAL_DIST):
            path = DIST_DIR / url[len(prefix):] if url.startswith(prefix) else None
            if path is not None and path.is_file():
                _INLINED[sheet] = InlineStyleSheet(css=path.read_text(encoding="utf-8"))
                break
        else:
            return sheet
    return _INLINED[sheet]


def _inline_comm_stylesheets(process_param_change):
    def wrapped(self, params):
        props = process_param_change(self, params)
        served = state.curdoc is not None and state.curdoc.session_context is not None
        if "stylesheets" in props and config.inline and not served:
            props["stylesheets"] = [_inline(sheet) for sheet in props["stylesheets"]]
        return props

    wrapped._xlstm_viz_inline = True
    return wrapped


if not getattr(Syncable._process_param_change, "_xlstm_viz_inline", False):
    Syncable._process_param_change = _inline_comm_stylesheets(Syncable._process_param_change)
