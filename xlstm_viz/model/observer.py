"""The observer protocol: how traces and the debugger watch (and step) the model's forward.

The forward (`xlstm_viz.model.forward`) reports every cell it has run as a typed event; a memory cell (a cell type
with state) reports a `StateEvent`, which also carries the state it started from, the state it returned and, if the
observer asked for it, its per-token memory statistics. Observers only read events: data flows one way, model ->
event -> observer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import mlx.core as mx


@dataclass
class CellEvent:
    """One cell has run. `token` is the token index in recurrent mode and None in chunkwise mode (all tokens at once).

    `inputs` are the values that flowed in along the cell's connections (after polarity and masks), keyed by source
    cell name (block-local inside a block); `output` is what flows out (after interventions)."""

    name: str
    cell_type: str
    block: int | None
    token: int | None
    inputs: dict[str, mx.array]
    output: mx.array


@dataclass
class StateEvent(CellEvent):
    """A stateful cell (the mLSTM memory, a conv's history, ...) has run: the state it started from and returned.

    zero_state_in: the run started from the zero state at this span (an observer need not read `state_in`);
    memory_trace: the cell's per-token statistics (mlstm_cell.MemoryTrace) when the observer asked for them."""

    state_in: Any = None
    state: Any = None
    zero_state_in: bool = False
    memory_trace: Any = None


@runtime_checkable
class Observer(Protocol):
    """What the forward calls. `stepping`: the forward yields after every event (the debugger), else it only calls
    `on_cell`. `wants_memory_trace(block)`: ask block's stateful cells for their per-token statistics (falsy: none;
    True: all; a tuple: the named ones, e.g. ("m",) of an mLSTM MemoryTrace)."""

    stepping: bool

    def wants_memory_trace(self, block: int) -> bool: ...

    def on_cell(self, event: CellEvent) -> None: ...
