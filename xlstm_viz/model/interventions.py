"""Hooks that change a cell's output during the forward: zero, scale, replace, or patch from another trace.

Each can be limited to token positions (`tokens=`) and, on cells whose features split into heads, to heads
(`heads=`): a per-head or per-position ablation is a "zero" limited that way. How many heads a cell has is its own
block's (`XLSTM.cell_heads`: the cell row's head rule and the block's dimensions), so an sLSTM block with
`slstm_num_heads` heads and an mLSTM block with `num_heads` in one stack are each split their own way, and a cell
without heads (an FFN, a CfC/LTC neuron block's cells) refuses `heads=`.

They live on the model (`model.interventions`), compose with wiring edits (the wiring decides what flows into a cell,
an intervention changes what flows out), and are listed and removed by handle.

On the neurons of a neuron block (`ncp.neurons` of cfc, ltc, ncp_slstm, ncp_mlstm blocks) an intervention acts
downstream by default: the recurrence runs as it would and the block's later cells see the changed output.
`inside=True` applies it inside the recurrence instead, to the neuron's state at every step (the CfC's h, the LTC's
potential v, the sLSTM neuron's h, the mLSTM neuron's h), before that state feeds the next step and the next NCP
layer: an ablation of the neuron in ncps terms (its synapses carry the changed value). `heads=` selects neurons there
(one "head" per neuron), `tokens=` the steps.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np

from xlstm_viz.wiring.block_types import INSIDE_PROBES, HeadRuleSet

KINDS = ("zero", "scale", "replace", "patch")


@dataclass
class Intervention:
    id: int
    probe: str  # cell name or fnmatch pattern
    kind: str
    value: Any = None  # scale factor or replacement array
    tokens: tuple[int, ...] | None = None  # limit to these token positions (None = all)
    source: Any = field(default=None, repr=False)  # Trace to patch from
    heads: tuple[int, ...] | None = None  # limit to these heads (None = all features)
    inside: bool = False  # a neuron cell's: applied to its state at every step of its recurrence

    def describe(self) -> str:
        where = "" if self.heads is None else f" heads {list(self.heads)}"
        where += "" if self.tokens is None else f" at tokens {list(self.tokens)}"
        where += " inside the recurrence" if self.inside else ""
        what = {"scale": f"scale by {self.value}", "replace": "replace", "zero": "zero", "patch": "patch from trace"}
        return f"#{self.id} {what[self.kind]} {self.probe}{where}"


class Interventions:
    """The model's interventions. `names`: a callable giving the model's probe names, so that an intervention on a
    probe that does not exist is refused when it is added (without it, any name is accepted). `heads_of`: a callable
    giving a probe's head count, or None for a cell without heads (`XLSTM.cell_heads`); without it `heads=` is
    refused."""

    def __init__(self, names=None, heads_of=None):
        self._items: dict[int, Intervention] = {}
        self._ids = itertools.count(1)
        self._names = names
        self._heads_of = heads_of

    def __len__(self) -> int:
        return len(self._items)

    def add(self, probe: str, kind: str, value=None, tokens=None, source_trace=None, heads=None,
            inside: bool = False) -> Intervention:
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
        if kind != "patch" and source_trace is not None:  # read by 'patch' only: elsewhere it changed nothing
            raise ValueError(f"source_trace= is for 'patch' interventions; a {kind!r} intervention does not read it")
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
        if not isinstance(inside, bool):
            raise TypeError(f"inside must be True or False, got {inside!r}")
        if inside:
            self._check_inside(probe)
        if heads is not None:
            heads = self._check_heads(probe, heads)
        item = Intervention(next(self._ids), probe, kind, value, tokens, source_trace, heads, inside)
        self._items[item.id] = item
        return item

    def _matching(self, probe: str) -> list[str]:
        names = self._names() if self._names is not None else [probe]
        return [n for n in names if n == probe or fnmatch.fnmatchcase(n, probe)] or [probe]

    def _check_inside(self, probe: str) -> None:
        outside = [n for n in self._matching(probe) if _local_name(n) not in INSIDE_PROBES]
        if outside:
            raise ValueError(f"{outside[0]!r} is not the neurons of a neuron block, so inside=True (in the "
                             f"recurrence) has no recurrence to act in; cells that take it: "
                             f"{sorted(INSIDE_PROBES)} of cfc / ltc / ncp_slstm / ncp_mlstm blocks")

    def _check_heads(self, probe: str, heads) -> tuple[int, ...]:
        raw = np.atleast_1d(np.asarray(heads, dtype=object)).ravel().tolist()
        bad = [h for h in raw if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 0]
        if bad or not raw:
            raise ValueError(f"heads must be a non-empty list of head indices >= 0, got {heads!r}")
        if self._heads_of is None:
            raise ValueError("heads= needs the cells' head counts: these interventions were made without heads_of")
        names = self._names() if self._names is not None else [probe]
        hits = [n for n in names if n == probe or fnmatch.fnmatchcase(n, probe)] or [probe]
        for name in hits:  # a pattern's every match must have the heads asked for
            count = self._heads_of(name)
            if count is None:
                raise ValueError(f"{name!r} has no heads (its features are not split by head), so heads={list(raw)} "
                                 f"cannot select any")
            if max(raw) >= count:
                raise ValueError(f"head {max(raw)} does not exist in {name!r}: that cell has heads 0..{count - 1}")
        return tuple(sorted({int(h) for h in raw}))

    def check_positions(self, seq_len: int) -> None:
        """Refuse, before a run of `seq_len` tokens, an intervention whose token positions lie outside it."""
        for item in self._items.values():
            if item.tokens is not None and max(item.tokens) >= seq_len:
                raise ValueError(f"intervention {item.describe()}: token {max(item.tokens)} is outside the sequence "
                                 f"(positions 0..{seq_len - 1})")

    def check_no_positions(self) -> None:
        """Refuse a run continued from a state (a decode step, a prefill in parts) while an intervention is limited
        to token positions: the positions count from the start of the sequence, and a continued run does not know
        where it starts, so each call's first token was taken as position 0 (tokens=[0] hit every decode step)."""
        for item in self._items.values():
            if item.tokens is not None:
                raise ValueError(f"intervention {item.describe()} is limited to token positions, which count from the "
                                 f"start of the sequence; a run continued from a state (a decode step, generate, a "
                                 f"prefill in parts) does not know its positions. Run the whole sequence from the "
                                 f"start (state=None), or add the intervention without tokens=")

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
        """The downstream interventions on cell `name` applied to its output (the inside ones act in the cell)."""
        for item in self._items.values():
            if item.inside or (item.probe != name and not fnmatch.fnmatchcase(name, item.probe)):
                continue
            heads = None if item.heads is None else self._heads_of(name)
            out = _apply_one(item, name, out, token, heads)
        return out

    def inside_hook(self, name: str, token: int | None, units: int):
        """The function a neuron cell calls on its neurons at every step (`CellParams.intervene`), applying the
        inside interventions on `name` ([B, T, units] by neuron id); None when there are none. token: the run's
        position of the cell's first step (a recurrent run's token; None: the cell sees the whole call)."""
        items = [i for i in self._items.values()
                 if i.inside and (i.probe == name or fnmatch.fnmatchcase(name, i.probe))]
        if not items:
            return None

        def intervene(values: mx.array, lo: int, hi: int, t: int | None = None, holding_only: bool = False):
            B, T, _ = values.shape
            at = None if t is None and token is None else (token or 0) + (t or 0)
            full = mx.zeros((B, T, units), values.dtype)
            full = mx.concatenate([full[..., :lo], values, full[..., hi:]], axis=-1)
            for item in items:
                if not (holding_only and item.kind == "scale"):
                    full = _apply_one(item, name, full, at, None if item.heads is None else units)
            return full[..., lo:hi]

        return intervene


def _apply_one(item: Intervention, name: str, out: mx.array, token: int | None, heads: int | None) -> mx.array:
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
    if item.heads is not None:
        new = mx.where(_head_mask(item, name, out.shape[-1], heads), new, out)
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


# Which cells split into heads by their table rows, read live from every registered block table (as
# execution.probes does); the dashboard's tensor tables ask `has_heads`.
_PER_HEAD_CELLS = HeadRuleSet("heads")
_GATE_CELLS = HeadRuleSet("features")


def _local_name(name: str) -> str:
    return name.split(".", 2)[2] if name.startswith("blocks.") else name


def has_heads(name: str) -> bool:
    """Whether a probe's table row splits its features into heads (per-head cells, and the gates: one feature per
    head); `XLSTM.cell_heads` gives the count for one model, and None where that block has no heads."""
    local = _local_name(name)
    return local in _PER_HEAD_CELLS or local in _GATE_CELLS


def _head_mask(item: Intervention, name: str, width: int, heads: int | None) -> mx.array:
    """[width] bool: the features of the chosen heads. Heads are contiguous blocks of features (as in the stats);
    a gate has one feature per head."""
    if heads is None or max(item.heads) >= heads or width % heads:
        raise ValueError(f"intervention #{item.id} on {name}: head {max(item.heads)} does not exist (the cell has "
                         f"{heads or 0} heads over {width} features)")
    per = width // heads
    mask = np.zeros(width, dtype=bool)
    for h in item.heads:
        mask[h * per:(h + 1) * per] = True
    return mx.array(mask)
