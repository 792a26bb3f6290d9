"""Errors as toasts in the browser session that caused them; outside a server they propagate."""

from __future__ import annotations

import html
import itertools

import panel as pn

_TOAST_CSS = """
.xv-toast { position: fixed; right: 18px; bottom: 18px; z-index: 2000; max-width: 440px; padding: 12px 16px;
  background: #1f77b4; color: #fff; border-radius: 6px; box-shadow: 0 3px 10px rgba(0,0,0,.35);
  font: 14px/1.35 system-ui, sans-serif; pointer-events: none; animation: xv-toast-fade 0.3s 5.7s forwards; }
@keyframes xv-toast-fade { to { opacity: 0; visibility: hidden; } }
"""


class EditToast:
    """A toast that says what an edit did, shown for 6 s in the page's corner.

    Not Panel's notifications: each of those is a Bokeh model added to the document, and adding or dropping one
    makes Bokeh re-walk every model of the page (~1,500; 280-450 ms of server CPU per edit on this machine, py-spy
    in `benchmarks/dashboard_breakdown.py`). This is one HTML pane whose text changes (a CSS animation hides it).

    The animation waits 5.7 s, then fades for 0.3 s: while it waits the page draws no frames for it. A fade over
    the whole 6 s redrew the page every frame (`visibility` is not animated on the compositor), ~500 ms of the
    renderer's CPU per edit in headless chromium, more than the edit's own update cost.
    """

    def __init__(self):
        self._n = itertools.count()
        self.pane = pn.pane.HTML("", width=0, height=0, margin=0, stylesheets=[_TOAST_CSS])

    def show(self, text: str) -> None:
        # a new element each time, so that its fade-out animation starts again
        self.pane.object = f'<div class="xv-toast" data-n="{next(self._n)}">{html.escape(text)}</div>'


def page_text(text: str) -> str:
    """Text from outside the code (an error naming an input, an imported edit's description) for a Panel
    notification or a Markdown pane, both of which the page shows as HTML: escaped, so that it shows as written
    (`unknown token label '<pad>'`) and cannot put markup (an image from another host) into the page."""
    return html.escape(str(text), quote=False)


def notify_error(exc: BaseException) -> None:
    """Show `exc` to the user of this browser session (the session keeps working); else raise it."""
    text = f"{type(exc).__name__}: {exc}"
    if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None and pn.state.notifications is not None:
        pn.state.notifications.error(page_text(text), duration=8000)
    else:
        raise exc


def guarded(fn):
    """Wrap a widget callback so an exception becomes a notification instead of a dead callback."""
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - reported to the user
            notify_error(exc)
    return run
