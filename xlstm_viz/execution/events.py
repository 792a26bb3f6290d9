"""What the executor reports after each cell (consumed by traces and the debugger)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx


@dataclass
class CellEvent:
    """One cell has run. `token` is the token index in recurrent mode and None in chunkwise mode (all tokens at once).

    `inputs` are the values that flowed in along the cell's connections (after polarity and masks), keyed by source
    cell name; `extras` carries cell-specific values (the memory cell's state C, n, m and per-token memory norms).
    """

    name: str
    cell_type: str
    block: int | None
    token: int | None
    inputs: dict[str, mx.array]
    output: mx.array
    extras: dict[str, Any] = field(default_factory=dict)
