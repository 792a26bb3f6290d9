"""Step-through debugger over the executor: cell by cell, token by token, with breakpoints.

The forward pass runs eagerly as a generator (mx.compile would hide the intermediates); each stop evaluates the
current cell and hands out numpy copies. Use one Debugger from one thread (MLX evaluates arrays on the thread that
built them); the dashboard keeps it on its model thread.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np

from xlstm_viz.execution.probes import GATE_CELLS, local_name, probe_names
from xlstm_viz.model.forward import MODES, Executor, _check_ids, named_state, state_arrays


@dataclass
class StepEvent:
    """A stop of the debugger: the cell that just ran, its inputs and output as numpy, and a summary."""

    name: str
    cell_type: str
    block: int | None
    token: int | None
    index: int  # how many cells ran before this one
    inputs: dict[str, np.ndarray]
    output: np.ndarray
    summary: dict[str, float]
    state: dict[str, np.ndarray] | None = None  # memory cells: C, n, m after this cell

    def __repr__(self) -> str:
        tok = "" if self.token is None else f" token {self.token}"
        return f"<StepEvent #{self.index} {self.name}{tok} {tuple(self.output.shape)} absmax={self.summary['absmax']:.4g}>"


@dataclass
class Breakpoint:
    id: int
    probe: str | None = None  # name or fnmatch pattern
    condition: str | None = None  # "nonfinite", "absmax>X", "saturated", "saturated>F"
    token: int | None = None
    enabled: bool = True
    hits: int = 0

    def describe(self) -> str:
        parts = [self.probe or "any cell"]
        if self.condition:
            parts.append(f"if {self.condition}")
        if self.token is not None:
            parts.append(f"at token {self.token}")
        return f"#{self.id} " + " ".join(parts)


_ABSMAX = re.compile(r"^absmax\s*>\s*(\S+)$")
_SATURATED = re.compile(r"^saturated(?:\s*>\s*(\S+))?$")
# "saturated" without a fraction: a gate pre-activation above 95% of the soft cap (|x| > 0.95 * gate_soft_cap).
SATURATED_FRACTION = 0.95


def _parse_condition(condition: str | None) -> tuple | None:
    """("nonfinite",), ("absmax", X) or ("saturated", F); an error names the condition and the bad number."""
    if condition is None:
        return None
    if not isinstance(condition, str):
        raise TypeError(f"a breakpoint condition is a string, got {condition!r}")
    condition = condition.strip()
    if condition == "nonfinite":
        return ("nonfinite",)
    for pattern, kind in ((_ABSMAX, "absmax"), (_SATURATED, "saturated")):
        match = pattern.match(condition)
        if match is None:
            continue
        text = match.group(1)
        if text is None:
            return (kind, SATURATED_FRACTION)
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"breakpoint condition {condition!r}: {text!r} is not a number") from None
        if kind == "absmax" and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"breakpoint condition {condition!r}: the threshold must be a finite number >= 0")
        if kind == "saturated" and not 0 < value <= 1:
            raise ValueError(f"breakpoint condition {condition!r}: F is a fraction of the gate soft cap, in (0, 1]")
        return (kind, value)
    raise ValueError(
        f"unknown breakpoint condition {condition!r}; use 'nonfinite', 'absmax>X' or 'saturated' / 'saturated>F'"
    )


def _summary(out: np.ndarray) -> dict[str, float]:
    finite = np.isfinite(out)
    values = out[finite] if not finite.all() else out
    return {
        "mean": float(values.mean()) if values.size else float("nan"),
        "std": float(values.std()) if values.size else float("nan"),
        "absmax": float(np.abs(values).max()) if values.size else float("nan"),
        "nonfinite": int(out.size - finite.sum()),
    }


class _Stepper:
    stepping = True

    def wants_memory_trace(self, block: int) -> bool:
        return False

    def on_cell(self, event) -> None:
        pass


class Debugger:
    def __init__(self, model, input_ids, mode: str = "recurrent", state=None):
        self.model = model
        self.input_ids = _check_ids(input_ids, model.config.vocab_size)
        if mode not in MODES:  # the forward is a generator: unchecked, these would only fail at the first step
            raise ValueError(f"debugger mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self._executor = Executor(model)
        if state is not None:
            state = self._executor.check_state(state, int(self.input_ids.shape[0]))
        self._initial_state = state
        self.breakpoints: list[Breakpoint] = []
        self._conditions: dict[str, tuple | None] = {}
        self._ids = itertools.count(1)
        self.reset()

    # -- lifecycle --
    def reset(self) -> None:
        """Start the forward pass again from the first cell (breakpoints are kept)."""
        self._gen = self._executor.run(self.input_ids, state=self._initial_state, mode=self.mode, observer=_Stepper())
        self._raw = None
        self.current: StepEvent | None = None
        self.finished = False
        self.logits: np.ndarray | None = None
        self.state = None
        self.history: list[str] = []
        self.stop_reason = "start"

    @property
    def cells_per_token(self) -> list[str]:
        return probe_names(self.model)

    # -- breakpoints --
    def add_breakpoint(self, probe: str | None = None, condition: str | None = None, token: int | None = None) -> Breakpoint:
        if probe is None and condition is None:
            raise ValueError("a breakpoint needs a probe name/pattern, a condition, or both")
        if probe is not None:
            self._matching(probe)
        self._conditions[condition] = _parse_condition(condition)
        token = self._check_token(token, "breakpoint")
        bp = Breakpoint(next(self._ids), probe, condition, token)
        self.breakpoints.append(bp)
        return bp

    def _matching(self, probe) -> list[int]:
        """Positions (in one token's cell order) of the probes `probe` names; an unknown one is a KeyError."""
        if not isinstance(probe, str):
            raise TypeError(f"a probe is a name or pattern string, got {probe!r}")
        names = probe_names(self.model)
        hits = [k for k, n in enumerate(names) if n == probe or fnmatch.fnmatchcase(n, probe)]
        if not hits:
            import difflib

            close = difflib.get_close_matches(probe, names, 5)  # none close: the first names, not an empty list
            raise KeyError(f"no probe matches {probe!r}; close names: {close or names[:8]}")
        return hits

    def _check_token(self, token, what: str) -> int | None:
        if token is None:
            return None
        S = int(self.input_ids.shape[1])
        if isinstance(token, bool) or not isinstance(token, (int, np.integer)):
            raise TypeError(f"{what} token must be an integer position, got {token!r}")
        if not 0 <= int(token) < S:
            raise ValueError(f"{what} token {token} is outside the sequence: positions are 0..{S - 1}")
        return int(token)

    def remove_breakpoint(self, bp) -> None:
        key = bp.id if isinstance(bp, Breakpoint) else int(bp)
        before = len(self.breakpoints)
        self.breakpoints = [b for b in self.breakpoints if b.id != key]
        if len(self.breakpoints) == before:
            raise KeyError(f"no breakpoint #{key}; breakpoints: {[b.id for b in self.breakpoints]}")

    # -- stepping --
    def _advance(self) -> bool:
        """Run one cell. False at the end of the forward pass."""
        if self.finished:
            return False
        try:
            self._raw = next(self._gen)
        except StopIteration as stop:
            logits, state = stop.value
            mx.eval(logits, [state_arrays(s) for s in state])
            self.logits = np.array(logits)
            self.state = state
            self.finished = True
            self._raw = None
            self.stop_reason = "end"
            return False
        self.history.append(self._raw.name)
        return True

    def _materialize(self) -> StepEvent:
        ev = self._raw
        state = None
        extras_state = getattr(ev, "state", None)  # a StateEvent carries the state its cell returned
        arrays = [ev.output, *ev.inputs.values()]
        named = named_state(extras_state)
        arrays += list(named.values())
        mx.eval(arrays)
        to_np = lambda a: np.array(a.astype(mx.float32)) if a.dtype == mx.bfloat16 else np.array(a)
        if extras_state is not None:
            state = {k: to_np(v) for k, v in named.items()}
        output = to_np(ev.output)
        self.current = StepEvent(
            ev.name, ev.cell_type, ev.block, ev.token, len(self.history) - 1,
            {k: to_np(v) for k, v in ev.inputs.items()}, output, _summary(output), state,
        )
        return self.current

    def _hit(self) -> Breakpoint | None:
        ev = self._raw
        for bp in self.breakpoints:
            if not bp.enabled:
                continue
            if bp.probe is not None and not (ev.name == bp.probe or fnmatch.fnmatchcase(ev.name, bp.probe)):
                continue
            if bp.token is not None and ev.token is not None and ev.token != bp.token:
                continue
            if bp.condition is not None and not self._condition_holds(bp.condition, ev):
                continue
            bp.hits += 1
            return bp
        return None

    def _condition_holds(self, condition: str, ev) -> bool:
        if condition not in self._conditions:  # a Breakpoint appended by hand
            self._conditions[condition] = _parse_condition(condition)
        parsed = self._conditions[condition]
        out = ev.output
        if parsed[0] == "nonfinite":
            return not bool(mx.all(mx.isfinite(out)).item())
        if parsed[0] == "absmax":
            return float(mx.max(mx.abs(out.astype(mx.float32))).item()) > parsed[1]
        if local_name(ev.name) in GATE_CELLS:
            cap = self.model.config.gate_soft_cap
            return bool(mx.any(mx.abs(out) > parsed[1] * cap).item())
        return False

    def _stop(self, reason: str) -> StepEvent | None:
        self.stop_reason = reason
        return self._materialize() if self._raw is not None else None

    def _run_until(self, predicate, reason: str) -> StepEvent | None:
        while self._advance():
            bp = self._hit()
            if bp is not None:
                if bp.condition == "nonfinite":
                    return self._stop(f"nonfinite at {self._raw.name}")
                return self._stop(f"breakpoint {bp.describe()}")
            if predicate(self._raw):
                return self._stop(reason)
        return None

    def step(self) -> StepEvent | None:
        """Run the next cell and stop after it. None at the end (then `logits` holds the output)."""
        if not self._advance():
            return None
        bp = self._hit()
        if bp is not None and bp.condition == "nonfinite":
            return self._stop(f"nonfinite at {self._raw.name}")
        return self._stop("step" if bp is None else f"breakpoint {bp.describe()}")

    def step_over(self) -> StepEvent | None:
        """Finish the current block: stop at its `blocks.i.out` (from outside a block, same as step)."""
        block = self._raw.block if self._raw is not None else None
        if block is None or self._raw.name == f"blocks.{block}.out":
            return self.step()
        target = f"blocks.{block}.out"
        return self._run_until(lambda ev: ev.name == target, "step over")

    def step_token(self) -> StepEvent | None:
        """Finish the current token: stop at its logits (chunkwise mode: all tokens at once)."""
        return self._run_until(lambda ev: ev.name == "logits", "step token")

    def continue_(self) -> StepEvent | None:
        """Run to the next breakpoint, or to the end (returns None there)."""
        return self._run_until(lambda ev: False, "continue")

    def run_to(self, probe: str | None = None, token: int | None = None) -> StepEvent | None:
        """Run until `probe` (name or pattern) runs at `token` (either may be None), or a breakpoint hits first."""
        if probe is None and token is None:
            raise ValueError("run_to needs a probe, a token, or both")
        # Refused up front rather than silently running to the end: an unknown probe, a token outside the
        # sequence, or a target that has already run (the cells run in the same order for every token).
        hits = self._matching(probe) if probe is not None else None
        token = self._check_token(token, "run_to")
        if self.finished:
            raise ValueError("run_to: the forward pass has finished; reset() to run it again")
        names = probe_names(self.model)
        per, done = len(names), len(self.history)
        spans = int(self.input_ids.shape[1]) if self.mode == "recurrent" else 1
        last = max(hits) if hits is not None else per - 1
        tokens = [token] if token is not None and self.mode == "recurrent" else range(done // per, spans)
        if not any(t * per + last >= done for t in tokens):
            where = self.history[-1] if self.history else "the start"
            at = "" if self.current is None or self.current.token is None else f", token {self.current.token}"
            raise ValueError(f"run_to {probe or 'any cell'}{'' if token is None else f' @ token {token}'}: it has "
                             f"already run (the debugger is at {where}{at}); reset() to run it again")

        def reached(ev) -> bool:
            if probe is not None and not (ev.name == probe or fnmatch.fnmatchcase(ev.name, probe)):
                return False
            return token is None or ev.token is None or ev.token == token

        return self._run_until(reached, f"run to {probe or ''}{'' if token is None else f' @ token {token}'}")
