"""Errors as toasts in the browser session that caused them; outside a server they propagate."""

from __future__ import annotations

import panel as pn


def notify_error(exc: BaseException) -> None:
    """Show `exc` to the user of this browser session (the session keeps working); else raise it."""
    text = f"{type(exc).__name__}: {exc}"
    if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None and pn.state.notifications is not None:
        pn.state.notifications.error(text, duration=8000)
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
