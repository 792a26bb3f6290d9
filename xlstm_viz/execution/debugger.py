"""Step-through debugger over the executor: cell by cell, token by token, with breakpoints.

The forward pass runs eagerly as a generator (mx.compile would hide the intermediates); each stop evaluates the
current cell and hands out numpy copies. Use one Debugger from one thread (MLX evaluates arrays on the thread that
built them); the dashboard keeps it on its model thread.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np

from xlstm_viz.execution.probes import GATE_CELLS, local_name, probe_names


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


_ABSMAX = re.compile(r"^absmax\s*>\s*([0-9.eE+-]+)$")
_SATURATED = re.compile(r"^saturated(?:\s*>\s*([0-9.eE+-]+))?$")


def _parse_condition(condition: str | None) -> None:
    if condition is None or condition == "nonfinite" or _ABSMAX.match(condition) or _SATURATED.match(condition):
        return
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
        from xlstm_viz.execution.executor import Executor, _check_ids

        self.model = model
        self.input_ids = _check_ids(input_ids, model.config.vocab_size)
        self.mode = mode
        self._initial_state = state
        self._executor = Executor(model)
        self.breakpoints: list[Breakpoint] = []
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
            names = probe_names(self.model)
            if not any(n == probe or fnmatch.fnmatchcase(n, probe) for n in names):
                import difflib

                raise KeyError(f"no probe matches {probe!r}; close names: {difflib.get_close_matches(probe, names, 5)}")
        _parse_condition(condition)
        bp = Breakpoint(next(self._ids), probe, condition, token)
        self.breakpoints.append(bp)
        return bp

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
            mx.eval(logits, [s.arrays() for s in state])
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
        extras_state = ev.extras.get("state")
        arrays = [ev.output, *ev.inputs.values()]
        if extras_state is not None:
            arrays += list(extras_state.arrays())
        mx.eval(arrays)
        to_np = lambda a: np.array(a.astype(mx.float32)) if a.dtype == mx.bfloat16 else np.array(a)
        if extras_state is not None:
            state = {k: to_np(v) for k, v in zip("Cnm", extras_state.arrays())}
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
        out = ev.output
        if condition == "nonfinite":
            return not bool(mx.all(mx.isfinite(out)).item())
        match = _ABSMAX.match(condition)
        if match:
            return float(mx.max(mx.abs(out.astype(mx.float32))).item()) > float(match.group(1))
        match = _SATURATED.match(condition)
        if match and local_name(ev.name) in GATE_CELLS:
            frac = float(match.group(1) or 0.95)
            cap = self.model.config.gate_soft_cap
            return bool(mx.any(mx.abs(out) > frac * cap).item())
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

        def reached(ev) -> bool:
            if probe is not None and not (ev.name == probe or fnmatch.fnmatchcase(ev.name, probe)):
                return False
            return token is None or ev.token is None or ev.token == token

        return self._run_until(reached, f"run to {probe or ''}{'' if token is None else f' @ token {token}'}")
