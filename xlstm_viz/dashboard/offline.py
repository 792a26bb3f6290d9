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
"""

from __future__ import annotations

from panel.theme.fast import Fast


class OfflineFast(Fast):
    """The Fast design without its remote font stylesheet (`//fonts.googleapis.com/css?family=Open+Sans`)."""

    _resources = {kind: res for kind, res in Fast._resources.items() if kind != "font"}

    @classmethod
    def _resolve_resource(cls, resource_type, resource, cdn=False):
        # Panel prefixes the design's local files with the class name; the Fast bundle is installed under "fast/".
        prefix = f"{cls.__name__.lower()}/"
        if resource.startswith(prefix):
            resource = "fast/" + resource[len(prefix):]
        return super()._resolve_resource(resource_type, resource, cdn=cdn)
