"""Change raw Bokeh data sources safely from any thread or after an `await`.

Raw Bokeh models may only change under their document's lock. In a served session a change from
a worker thread (or after an await in an async callback) raises "_pending_writes should be
non-None"; scheduling the change as a next-tick callback runs it under the lock. Outside a
server (notebook, tests) the change applies at once.

Inside `locked(doc)` (the app's held delivery of a result: a next-tick callback of `doc`, so under its lock) a
change applies at once too. Scheduled instead, every change would run in a tick of its own, outside the hold,
and reach the browser as a message of its own: one result made ~50 messages and as many page layouts (1.3 s
per click in `benchmarks/dashboard_breakdown.py`).
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

import panel as pn
from panel.io.state import set_curdoc

_local = threading.local()


@contextlib.contextmanager
def locked(doc):
    """Mark the running code as holding `doc`'s lock on this thread (a next-tick callback of `doc`)."""
    prev = getattr(_local, "doc", None)
    _local.doc = doc
    try:
        yield
    finally:
        _local.doc = prev


@contextlib.contextmanager
def held(doc):
    """Inside a callback of `doc` (under its lock): every change made here reaches the page as one message."""
    if doc is None or doc.session_context is None:
        yield
        return
    with pn.io.hold(doc), locked(doc):
        yield


def _in_server_session(model) -> bool:
    doc = model.document
    return doc is not None and doc.session_context is not None


def apply(model, fn) -> None:
    """Run `fn()` (which mutates `model` or its siblings) under `model`'s document lock."""
    if not _in_server_session(model) or getattr(_local, "doc", None) is model.document:
        fn()
        return
    doc = model.document
    with set_curdoc(doc):
        pn.state.execute(fn, schedule=True)


def same_data(a, b) -> bool:
    """Whether two ColumnDataSource `data` dicts hold the same columns and values (NaN equal to NaN)."""
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
                and all(same_data(a[k], b[k]) for k in a))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        x, y = np.asarray(a), np.asarray(b)
        if x.shape != y.shape or (x.dtype == object) != (y.dtype == object):
            return False
        if x.dtype == object:
            return all(same_data(u, v) for u, v in zip(x.tolist(), y.tolist()))
        try:
            return bool(np.array_equal(x, y, equal_nan=True))
        except TypeError:  # strings, bytes: no NaN to match
            return bool(np.array_equal(x, y))
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b)
                and all(same_data(u, v) for u, v in zip(a, b)))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return type(a) is type(b) and a == b


def replace_data(source, data: dict) -> None:
    """Swap a ColumnDataSource's columns in one message (the figure itself is never rebuilt).

    Columns equal to the current ones send nothing: Bokeh sends every assignment of `data`, equal or not, and the
    page repaints the figure for it (a debugger step re-sent three empty heatmaps and an unmoved ring: four of its
    six figure paints, `benchmarks/dashboard_breakdown.py --action step`)."""
    def swap():
        if not same_data(dict(source.data), data):
            source.data = dict(data)

    apply(source, swap)


def set_props(model, **props) -> None:
    apply(model, lambda: model.update(**props))
