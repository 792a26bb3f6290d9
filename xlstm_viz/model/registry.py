"""Block types by layer-type name, so mixed stacks (mLSTM, sLSTM, CfC ...) are one lookup away.

A block type is an nn.Module class with `block_type`, `cell_names()`, `run_cell(local, x, w, ctx, cell_type, params)`,
`new_state(B)`, `param(path)` and a constructor `(config)`. Its cells and connections are declared once, in its
block table (`xlstm_viz.wiring.block_types`); its cell wiring is built from that table.
"""

from __future__ import annotations

from typing import Callable

BLOCK_TYPES: dict[str, type] = {}
CELL_WIRINGS: dict[str, Callable] = {}


def register_block(name: str, cls: type, cell_wiring: Callable) -> None:
    BLOCK_TYPES[name] = cls
    CELL_WIRINGS[name] = cell_wiring


def block_class(name: str) -> type:
    try:
        return BLOCK_TYPES[name]
    except KeyError:
        raise ValueError(
            f"unknown block type {name!r}; registered block types: {sorted(BLOCK_TYPES)}"
        ) from None


def _register_builtin() -> None:
    from xlstm_viz.model.mlstm_block import MLSTMBlock
    from xlstm_viz.wiring import CellWiring

    def mlstm_wiring(index: int, config) -> "CellWiring":
        return CellWiring.mlstm_block(
            index,
            embedding_dim=config.embedding_dim,
            num_heads=config.num_heads,
            qk_dim=config.qk_dim,
            v_dim=config.v_dim,
            ffn_dim=config.ffn_dim,
        )

    register_block("mlstm", MLSTMBlock, mlstm_wiring)


_register_builtin()
