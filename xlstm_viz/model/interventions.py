"""Hooks that change a cell's output during the forward: zero, scale, replace, or patch from another trace.

They live on the model (`model.interventions`), compose with wiring edits (the wiring decides what flows into a cell,
an intervention changes what flows out), and are listed and removed by handle.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np

KINDS = ("zero", "scale", "replace", "patch")


@dataclass
class Intervention:
    id: int
    probe: str  # cell name or fnmatch pattern
    kind: str
    value: Any = None  # scale factor or replacement array
    tokens: tuple[int, ...] | None = None  # limit to these token positions (None = all)
    source: Any = field(default=None, repr=False)  # Trace to patch from

    def describe(self) -> str:
        where = "" if self.tokens is None else f" at tokens {list(self.tokens)}"
        what = {"scale": f"scale by {self.value}", "replace": "replace", "zero": "zero", "patch": "patch from trace"}
        return f"#{self.id} {what[self.kind]} {self.probe}{where}"


class Interventions:
    """The model's interventions. `names`: a callable giving the model's probe names, so that an intervention on a
    probe that does not exist is refused when it is added (without it, any name is accepted)."""

    def __init__(self, names=None):
        self._items: dict[int, Intervention] = {}
        self._ids = itertools.count(1)
        self._names = names

    def __len__(self) -> int:
        return len(self._items)

    def add(self, probe: str, kind: str, value=None, tokens=None, source_trace=None) -> Intervention:
        if kind not in KINDS:
            raise ValueError(f"intervention kind must be one of {KINDS}, got {kind!r}")
        if not isinstance(probe, str):
            raise TypeError(f"an intervention's probe is a name or pattern string, got {probe!r}")
        if self._names is not None:
            names = self._names()
            if probe not in names and not any(fnmatch.fnmatchcase(n, probe) for n in names):
                import difflib

                close = difflib.get_close_matches(probe, names, n=5)
                raise KeyError(f"no probe matches {probe!r}, so the intervention would do nothing; close names: "
                               f"{close or names[:8]}")
        if kind == "scale" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                or not math.isfinite(value)):
            raise ValueError(f"a 'scale' intervention needs a finite number as value, got {value!r}")
        if kind in ("zero", "patch") and value is not None:
            raise ValueError(f"a {kind!r} intervention takes no value, got {value!r}")
        if kind == "replace":
            if value is None:
                raise ValueError("a 'replace' intervention needs the replacement array as value")
            array = np.asarray(value)
            if not np.issubdtype(array.dtype, np.number) or array.ndim < 2:
                raise ValueError(f"a 'replace' value is a numeric [B, S, ...] array, got dtype {array.dtype} with "
                                 f"shape {array.shape}")
        if kind == "patch":
            if source_trace is None:
                raise ValueError("a 'patch' intervention needs source_trace= (a Trace recorded in full mode)")
            if probe not in source_trace.full:
                raise KeyError(
                    f"cannot patch {probe!r}: the source trace holds full tensors only for {sorted(source_trace.full)}"
                )
        if tokens is not None:
            raw = np.atleast_1d(np.asarray(tokens, dtype=object)).ravel().tolist()
            bad = [t for t in raw if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0]
            if bad or not raw:
                raise ValueError(f"tokens must be a non-empty list of positions >= 0, got {tokens!r}")
            tokens = tuple(int(t) for t in raw)
        item = Intervention(next(self._ids), probe, kind, value, tokens, source_trace)
        self._items[item.id] = item
        return item

    def list(self) -> list[Intervention]:
        return list(self._items.values())

    def remove(self, handle) -> None:
        key = handle.id if isinstance(handle, Intervention) else int(handle)
        if key not in self._items:
            raise KeyError(f"no intervention #{key}; active: {sorted(self._items)}")
        del self._items[key]

    def clear(self) -> None:
        self._items.clear()

    def apply(self, name: str, out: mx.array, token: int | None) -> mx.array:
        for item in self._items.values():
            if item.probe != name and not fnmatch.fnmatchcase(name, item.probe):
                continue
            out = _apply_one(item, name, out, token)
        return out


def _apply_one(item: Intervention, name: str, out: mx.array, token: int | None) -> mx.array:
    if item.kind == "zero":
        new = mx.zeros_like(out)
    elif item.kind == "scale":
        new = out * item.value
    else:
        full = item.source.full[name] if item.kind == "patch" else item.value
        full = mx.array(np.asarray(full)).astype(out.dtype)
        # A recurrent call sees one token at a time: take that token's slice of a [B, S, ...] replacement.
        if token is not None and full.ndim == out.ndim and full.shape[1] != out.shape[1]:
            full = full[:, token : token + 1]
        if tuple(full.shape) != tuple(out.shape):
            raise ValueError(
                f"intervention #{item.id} on {name}: replacement has shape {tuple(full.shape)}, the cell output has "
                f"shape {tuple(out.shape)}"
            )
        new = full
    if item.tokens is None:
        return new
    # Restrict to token positions (axis 1 of [B, S, ...]).
    S = out.shape[1]
    positions = np.arange(S) if token is None else np.array([token])
    keep = np.isin(positions, item.tokens)
    if not keep.any():
        return out
    shape = [1] * out.ndim
    shape[1] = S
    sel = mx.array(keep.reshape(shape))
    return mx.where(sel, new, out)
