"""Number fields that refuse an out-of-range value with a message instead of silently replacing it.

Panel's `IntInput.from_param` copies the parameter's bounds into the browser widget, which clamps
what the user typed (top-k 50 became 10 with no word). These fields carry no bounds; the value is
checked against the parameter's bounds when it arrives, an out-of-range one is reported with the
value and the allowed range, and the field goes back to the value in use.
"""

from __future__ import annotations

import panel as pn

from xlstm_viz.dashboard.notifications import notify_error


def range_text(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f"{lo}..{hi}"
    if lo is not None:
        return f">= {lo}"
    if hi is not None:
        return f"<= {hi}"
    return "any whole number"


def check_int(label: str, value, bounds) -> int:
    """`value` as an int inside `bounds` (inclusive, None = open), else ValueError naming label, value and range."""
    lo, hi = bounds if bounds is not None else (None, None)
    if value is None or isinstance(value, bool) or int(value) != value:
        raise ValueError(f"{label}: {value!r} is not a whole number (allowed {range_text(lo, hi)})")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{label} {value} is out of range: allowed {range_text(lo, hi)}")
    return int(value)


def int_input(obj, name: str, label: str, **kwargs) -> pn.widgets.IntInput:
    """An IntInput bound to integer parameter `name` of `obj`, checked against its (current) bounds."""
    widget = pn.widgets.IntInput(label=label, value=getattr(obj, name), **kwargs)

    def from_widget(event):
        if event.new == getattr(obj, name):
            return
        try:
            value = check_int(label, event.new, obj.param[name].bounds)
        except ValueError as exc:
            widget.value = getattr(obj, name)  # show the value still in use
            notify_error(exc)
            return
        setattr(obj, name, value)

    def from_param(event):
        widget.value = event.new

    widget.param.watch(from_widget, "value")
    obj.param.watch(from_param, name)
    return widget
