"""Cell types and block tables: what a block is made of, declared once (no MLX here).

A *cell type* says what a cell computes in terms the rest of the package needs: how many inputs it takes
("one" or "many"), how its features split for per-head statistics (`heads`: "none", "heads" = num_heads
equal slices, "features" = one feature per head, as the scalar-per-head gates), whether it carries
recurrent state, and the dashboard's node `kind` (colour). The pure function that computes it is attached
by the model (`xlstm_viz.model.mlstm_block`), so this module stays importable without MLX.

A *block table* lists a block type's cells (block-local name, cell type, the checkpoint weight it reads and
that weight's shape as a function of the block's dimensions) and its connections. `CellWiring.mlstm_block`,
the probe names, the per-head rule (`execution.probes.probe_heads`) and the dashboard's node kinds are read
from the table, so a block's cells are spelled in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

HEAD_RULES = ("none", "heads", "features")


@dataclass(frozen=True)
class CellType:
    name: str
    inputs: str = "one"  # "one": exactly one incoming value; "many": a sum/product/memory of several
    heads: str = "none"  # see HEAD_RULES
    state: tuple[str, ...] = ()  # names of the recurrent state a cell of this type carries (mLSTM: C, n, m)
    kind: str = "residual"  # dashboard node kind (colour), see dashboard.model_tables.KIND_COLORS

    def __post_init__(self):
        if self.inputs not in ("one", "many"):
            raise ValueError(f"cell type {self.name!r}: inputs must be 'one' or 'many', got {self.inputs!r}")
        if self.heads not in HEAD_RULES:
            raise ValueError(f"cell type {self.name!r}: heads must be one of {HEAD_RULES}, got {self.heads!r}")


CELL_TYPES: dict[str, CellType] = {}


def register_cell_type(cell_type: CellType) -> CellType:
    CELL_TYPES[cell_type.name] = cell_type
    return cell_type


def cell_type(name: str) -> CellType:
    """The registered cell type `name`; an unknown name is an error listing the registered ones."""
    try:
        return CELL_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown cell type {name!r}; registered cell types: {sorted(CELL_TYPES)}") from None


for _t in (
    CellType("block_input", inputs="one", kind="input"),
    CellType("rmsnorm", kind="norm"),
    CellType("linear", kind="projection"),
    CellType("gate", heads="features", kind="gate"),
    CellType("output_gate", kind="gate"),
    CellType("mlstm_memory", inputs="many", state=("C", "n", "m"), kind="memory"),
    CellType("multihead_norm", kind="norm"),
    CellType("product", inputs="many", kind="residual"),
    CellType("residual", inputs="many", kind="residual"),
    CellType("linear_silu", kind="ffn"),
):
    register_cell_type(_t)


@dataclass(frozen=True)
class CellRow:
    """One cell of a block table. `weight`: checkpoint name relative to the block, `shape(dims)` its shape
    (first entry = the cell's features); weightless cells give `features(dims)`. `heads` overrides the type's
    head rule for this cell (the mLSTM q/k/v are linear cells whose features split into heads). `kind`
    overrides the type's dashboard kind."""

    local: str
    cell_type: str
    weight: str | None = None
    shape: Callable[[dict], list] | None = None
    features: Callable[[dict], int] | None = None
    bias: str | None = None
    heads: str | None = None
    kind: str | None = None
    extra: Callable[[dict], dict] | None = None

    def head_rule(self) -> str:
        return self.heads or cell_type(self.cell_type).heads

    def node_kind(self) -> str:
        return self.kind or cell_type(self.cell_type).kind


@dataclass(frozen=True)
class BlockTable:
    """A block type: its cells (in definition order) and connections (src, dst); a connection into a cell
    with a weight feeds that weight."""

    name: str
    cells: tuple[CellRow, ...]
    connections: tuple[tuple[str, str], ...]
    dims: tuple[str, ...] = ()  # the dimensions its shapes read
    _rows: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        rows = {row.local: row for row in self.cells}
        if len(rows) != len(self.cells):
            raise ValueError(f"block table {self.name!r} names a cell twice")
        for row in self.cells:
            cell_type(row.cell_type)  # every cell's type is registered
            if row.heads is not None and row.heads not in HEAD_RULES:
                raise ValueError(f"block table {self.name!r}, cell {row.local!r}: heads {row.heads!r}")
        for src, dst in self.connections:
            for end in (src, dst):
                if end not in rows:
                    raise ValueError(f"block table {self.name!r}: connection {src}->{dst} names no cell {end!r}")
        self._rows.update(rows)

    def row(self, local: str) -> CellRow | None:
        return self._rows.get(local)

    def locals_with_heads(self, rule: str) -> tuple[str, ...]:
        return tuple(row.local for row in self.cells if row.head_rule() == rule)


BLOCK_TABLES: dict[str, BlockTable] = {}


def register_block_table(table: BlockTable) -> BlockTable:
    BLOCK_TABLES[table.name] = table
    return table


def block_table(name: str) -> BlockTable:
    try:
        return BLOCK_TABLES[name]
    except KeyError:
        raise ValueError(f"unknown block type {name!r}; block types with a table: {sorted(BLOCK_TABLES)}") from None


def _gate(name: str) -> CellRow:
    return CellRow(f"mlstm.{name}", "gate", f"mlstm_layer.{name}_preact.weight", lambda d: [d["num_heads"], d["D"]],
                   bias=f"mlstm_layer.{name}_preact.bias")


# xLSTM-7B ("xLSTM Large") block: pre-norm mLSTM layer and SwiGLU FFN, with the NX-AI checkpoint names.
# The equations are in xlstm_viz/model/mlstm_block.py (cell functions) and mlstm_cell.py (the recurrence).
MLSTM_BLOCK = register_block_table(BlockTable(
    "mlstm",
    cells=(
        CellRow("in", "block_input", features=lambda d: d["D"]),
        CellRow("mlstm.norm_in", "rmsnorm", "norm_mlstm.weight", lambda d: [d["D"]]),
        CellRow("mlstm.q", "linear", "mlstm_layer.q.weight", lambda d: [d["QK"], d["D"]], heads="heads"),
        CellRow("mlstm.k", "linear", "mlstm_layer.k.weight", lambda d: [d["QK"], d["D"]], heads="heads"),
        CellRow("mlstm.v", "linear", "mlstm_layer.v.weight", lambda d: [d["V"], d["D"]], heads="heads"),
        _gate("igate"),
        _gate("fgate"),
        CellRow("mlstm.ogate", "output_gate", "mlstm_layer.ogate_preact.weight", lambda d: [d["V"], d["D"]],
                heads="heads"),
        CellRow("mlstm.memory", "mlstm_memory", features=lambda d: d["V"], heads="heads",
                extra=lambda d: {"num_heads": d["num_heads"], "qk_head_dim": d["QK"] // d["num_heads"],
                                 "v_head_dim": d["V"] // d["num_heads"]}),
        CellRow("mlstm.norm", "multihead_norm", "mlstm_layer.multihead_norm.weight", lambda d: [d["V"]],
                heads="heads", extra=lambda d: {"num_heads": d["num_heads"]}),
        CellRow("mlstm.h", "product", features=lambda d: d["V"], heads="heads"),
        CellRow("mlstm.out", "linear", "mlstm_layer.out_proj.weight", lambda d: [d["D"], d["V"]], kind="residual"),
        CellRow("mid", "residual", features=lambda d: d["D"]),
        CellRow("ffn.norm_in", "rmsnorm", "norm_ffn.weight", lambda d: [d["D"]]),
        CellRow("ffn.gate", "linear_silu", "ffn.proj_up_gate.weight", lambda d: [d["F"], d["D"]]),
        CellRow("ffn.up", "linear", "ffn.proj_up.weight", lambda d: [d["F"], d["D"]], kind="ffn"),
        CellRow("ffn.h", "product", features=lambda d: d["F"], kind="ffn"),
        CellRow("ffn.out", "linear", "ffn.proj_down.weight", lambda d: [d["D"], d["F"]], kind="ffn"),
        CellRow("out", "residual", features=lambda d: d["D"]),
    ),
    # Order matters: residual sums add in connection order, as the official code does.
    connections=(
        ("in", "mlstm.norm_in"),
        *(("mlstm.norm_in", f"mlstm.{c}") for c in ("q", "k", "v", "igate", "fgate", "ogate")),
        *((f"mlstm.{c}", "mlstm.memory") for c in ("q", "k", "v", "igate", "fgate")),
        ("mlstm.memory", "mlstm.norm"),
        ("mlstm.norm", "mlstm.h"),
        ("mlstm.ogate", "mlstm.h"),
        ("mlstm.h", "mlstm.out"),
        ("in", "mid"),
        ("mlstm.out", "mid"),
        ("mid", "ffn.norm_in"),
        ("ffn.norm_in", "ffn.gate"),
        ("ffn.norm_in", "ffn.up"),
        ("ffn.gate", "ffn.h"),
        ("ffn.up", "ffn.h"),
        ("ffn.h", "ffn.out"),
        ("mid", "out"),
        ("ffn.out", "out"),
    ),
    dims=("D", "num_heads", "QK", "V", "F"),
))
