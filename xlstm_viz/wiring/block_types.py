"""The cell registry and the block registry: what a block is made of, declared once (no MLX here).

A *cell type* (`CELL_TYPES`) says what a cell computes in terms the rest of the package needs: how many inputs it
takes ("one" or "many"), how its features split for per-head statistics (`heads`: "none", "heads" = num_heads equal
slices, "features" = one feature per head, as the scalar-per-head gates), the names of its recurrent state (if
any), the dashboard's node `kind` (colour), and `fn`, the pure function that computes it:

    fn(x: dict[str, mx.array], w: Callable[[str], mx.array], state, p: CellParams) -> (output, new_state)

x: the values flowing in along the cell's connections keyed by source cell (block-local names, connection order);
w(path): the checkpoint weight at block-relative `path` as the wiring masks it; state: the cell's state (None:
fresh); p: the wiring's cell params (`p.params`: weight / bias paths, num_heads, ...), the block's config and the
run mode. State is returned, never written anywhere. The functions are attached by the model package
(`xlstm_viz.model.cells.register`), so this module stays importable without MLX.

A *block type* (`BLOCK_TYPES`, keyed by layer type as `config.layer_types` spells it) is a table of cells
(block-local name, cell type, the checkpoint weight it reads and that weight's shape as a function of the block's
dimensions) plus its connections, and, attached by the model package, the nn.Module that holds its parameters and
the function from a model config to the table's dimensions (`attach_block`). `CellWiring.from_table`, the probe
names, the per-head rule (`execution.probes.probe_heads`), the dashboard's node kinds and gate panels are read from
the table, so a block's cells are spelled in one place. A checkpoint block's type is read from the same tables
(`detect_block_type`, used by `BlockWiring.from_checkpoint`): the table whose cells' weights (plus its `signature`,
the names its cells read by prefix, such as the neurons') are all in the block, or config.json's layer_types.

Registered block types: "mlstm" (the xLSTM-7B block; equations in xlstm_viz/model/mlstm_block.py, the recurrence
in mlstm_cell.py), "slstm" (the original xLSTM's sLSTM block; equations in xlstm_viz/model/slstm_block.py, the
recurrence in slstm_cell.py) and "orig_mlstm" (the original xLSTM's mLSTM block, xlstm_viz/model/orig_mlstm_block.py,
on the same mlstm_cell.py recurrence), "cfc" and "ltc" (an AutoNCP-wired CfC / LTC neuron block,
xlstm_viz/model/neuron_block.py, on xlstm_viz.neurons; tables from `ncp_block_table`), "ncp_slstm" and "ncp_mlstm"
(the same NCP with sLSTM / mLSTM memory cells as neurons, xlstm_viz/model/ncp_slstm_block.py and ncp_mlstm_block.py,
on slstm_cell.py / mlstm_cell.py). To add a block type: register its cell types here (or reuse these), a BlockTable
with `register_block_table` (with a `signature` if its rows' weights alone do not tell it from every other
table: `tests/test_checkpoint_block_types.py` saves one block of each registered type and detects it), then, in a model module imported by xlstm_viz/model/xlstm.py, attach each new type's
function (`attach_cell_function`) and the block's nn.Module and dimensions (`attach_block`); slstm_block.py is a
complete example; a neuron block (an NCP of neurons) takes its table from `ncp_block_table` and its module declares
`wiring`, `uses_polarity` and `synapse_rule` (what the live NCPS tab offers), ncp_slstm_block.py is the example.
A newcomer looking for the sLSTM reads: its equations in model/slstm_block.py (module docstring)
and model/slstm_cell.py; the table that wires them, `SLSTM_BLOCK` below; its probes in execution/probes.py; the
views that show them: dashboard/model_view.py (block and cell graphs, kinds from this table) and
dashboard/trace_view.py + trace_tables.gate_panels (its gates and states over time, `SLSTM_BLOCK.panels`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from typing import Callable

HEAD_RULES = ("none", "heads", "features")


@dataclass
class CellType:
    name: str
    inputs: str = "one"  # "one": exactly one incoming value; "many": a sum/product/memory of several
    heads: str = "none"  # see HEAD_RULES
    state: tuple[str, ...] = ()  # names of the recurrent state a cell of this type carries (mLSTM: C, n, m)
    kind: str = "residual"  # dashboard node kind (colour), see dashboard.model_tables.KIND_COLORS
    # The pure function (see the module docstring); None until the model package attaches it.
    fn: Callable | None = field(default=None, compare=False, repr=False)
    # True: `fn` can also report its per-token memory statistics (p.trace asks; it then returns (out, state, trace)).
    traces: bool = False
    # True: `fn` also takes one token's activations without the sequence axis ([B, F] instead of [B, 1, F]), so an
    # unobserved decode step runs the block flat: every projection is then one 2-D matmul node instead of
    # flatten-matmul-unflatten (a compiled 7B decode step is bound by its graph's node count).
    flat_step: bool = False

    def __post_init__(self):
        if self.inputs not in ("one", "many"):
            raise ValueError(f"cell type {self.name!r}: inputs must be 'one' or 'many', got {self.inputs!r}")
        if self.heads not in HEAD_RULES:
            raise ValueError(f"cell type {self.name!r}: heads must be one of {HEAD_RULES}, got {self.heads!r}")


CELL_TYPES: dict[str, CellType] = {}
# Block-local probes whose interventions may act inside a neuron cell's recurrence (`ncp_block_table`'s neurons)
INSIDE_PROBES = {"ncp.neurons"}


def register_cell_type(cell_type: CellType) -> CellType:
    CELL_TYPES[cell_type.name] = cell_type
    return cell_type


def attach_cell_function(name: str, fn: Callable, traces: bool = False) -> None:
    """Give the registered cell type `name` its pure function (the model package does this for the built-in types)."""
    ct = cell_type(name)
    ct.fn = fn
    ct.traces = traces or ct.traces


def cell_type(name: str) -> CellType:
    """The registered cell type `name`; an unknown name is an error listing the registered ones."""
    try:
        return CELL_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown cell type {name!r}; registered cell types: {sorted(CELL_TYPES)}") from None


for _t in (
    CellType("block_input", inputs="one", kind="input", flat_step=True),
    CellType("rmsnorm", kind="norm", flat_step=True),
    CellType("linear", kind="projection", flat_step=True),
    CellType("gate", heads="features", kind="gate", flat_step=True),
    CellType("output_gate", kind="gate", flat_step=True),
    CellType("mlstm_memory", inputs="many", state=("C", "n", "m"), kind="memory", flat_step=True),
    CellType("multihead_norm", kind="norm", flat_step=True),
    CellType("product", inputs="many", kind="residual", flat_step=True),
    CellType("residual", inputs="many", kind="residual", flat_step=True),
    CellType("linear_silu", kind="ffn", flat_step=True),
    # the sLSTM block's (xlstm_viz/model/slstm_block.py)
    CellType("layernorm", kind="norm"),  # LayerNorm, weight stored as an offset from 1 (the original xLSTM's)
    CellType("causal_conv", state=("history",), kind="conv"),  # SiLU(depthwise causal Conv1d); state: last K-1 inputs
    CellType("headwise", heads="heads", kind="gate"),  # block-diagonal W x, one block per head
    CellType("slstm_memory", inputs="many", state=("c", "n", "m", "h"), kind="memory"),  # [c; n; m; h; raw i f z o]
    CellType("state_slice", heads="heads", kind="memory"),  # one of c, n, m, h out of the sLSTM memory's output
    CellType("group_norm", heads="heads", kind="norm"),  # per-head LayerNorm, weight as an offset from 1
    CellType("linear_act", kind="ffn"),  # act(W x + b), the act named by the cell's params (the sLSTM FFN's gate)
    # the original mLSTM block's (xlstm_viz/model/orig_mlstm_block.py)
    CellType("concat_linear", inputs="many", heads="features", kind="gate"),  # W [x_1; x_2; ...] + b
    CellType("learnable_skip", inputs="many", heads="heads", kind="residual"),  # x_1 + s * x_2
    CellType("silu_gated", inputs="many", kind="residual"),  # x_1 * SiLU(x_2)
    # NCP neurons (model/neuron_block.py): every neuron's activity per token, by neuron id; state: the same, last token
    CellType("cfc_neurons", heads="features", state=("h",), kind="memory"),
    CellType("ltc_neurons", heads="features", state=("v",), kind="memory"),  # the LTC's potentials v, by neuron id
    CellType("ltc_readout", heads="features", kind="memory"),  # ncps's affine output mapping of the motor neurons
    # sLSTM neurons of an NCP (model/ncp_slstm_block.py): [h; c; n; m; gates] per neuron and token, by neuron id
    CellType("ncp_slstm_memory", heads="features", state=("c", "n", "m", "h"), kind="memory"),
    # mLSTM neurons of an NCP (model/ncp_mlstm_block.py): [h; r; o] per neuron and token; state: each layer's C, n, m
    CellType("ncp_mlstm_memory", heads="features", state=("C", "n", "m"), kind="memory"),
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
    # A row the block has only for some sizes (the sLSTM's conv when conv1d_kernel_size > 0, its FFN when it has
    # one): `when(dims)` False drops the cell and every connection that touches it.
    when: Callable[[dict], bool] | None = None

    def present(self, dims: dict) -> bool:
        return self.when is None or bool(self.when(dims))

    def head_rule(self) -> str:
        return self.heads or cell_type(self.cell_type).heads

    def node_kind(self) -> str:
        return self.kind or cell_type(self.cell_type).kind


@dataclass
class BlockTable:
    """A block type: its cells (in definition order) and connections (src, dst); a connection into a cell
    with a weight feeds that weight. A connection (src, dst, when) exists only where `when(dims)` holds (the
    sLSTM gates read the normed input directly when there is no conv)."""

    name: str
    cells: tuple[CellRow, ...]
    connections: tuple[tuple[str, str], ...]
    dims: tuple[str, ...] = ()  # the dimensions its shapes read
    # The dashboard's per-head panels over time: (cell local name, preferred stat, title).
    panels: tuple[tuple[str, str, str], ...] = ()
    # How a checkpoint block of this type is recognised (`detect_block_type`): its cells' own weights and biases
    # (the rows present at every size) plus `signature`, the block-relative names it always has that its cells read
    # by name or prefix rather than through a row (the sLSTM's recurrent kernel, the neurons'), which is what tells
    # the neuron tables apart; `owns`: prefixes of the names those cells read (every name under one belongs here).
    signature: tuple[str, ...] = ()
    owns: tuple[str, ...] = ()
    # Attached by the model package (`attach_block`): the nn.Module class `(config) -> module` holding the block's
    # parameters under their checkpoint names (it has `param(path)` and `new_state(batch)`), and `dims_of(config)`,
    # the table's dimensions for a model config.
    module: type | None = field(default=None, compare=False, repr=False)
    dims_of: Callable | None = field(default=None, compare=False, repr=False)
    _rows: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _names: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # required/known, cached

    def __post_init__(self):
        rows = {row.local: row for row in self.cells}
        if len(rows) != len(self.cells):
            raise ValueError(f"block table {self.name!r} names a cell twice")
        for row in self.cells:
            cell_type(row.cell_type)  # every cell's type is registered
            if row.heads is not None and row.heads not in HEAD_RULES:
                raise ValueError(f"block table {self.name!r}, cell {row.local!r}: heads {row.heads!r}")
        for conn in self.connections:
            src, dst = conn[:2]
            for end in (src, dst):
                if end not in rows:
                    raise ValueError(f"block table {self.name!r}: connection {src}->{dst} names no cell {end!r}")
        self._rows.update(rows)

    def rows_for(self, dims: dict) -> tuple[CellRow, ...]:
        """The cells a block of these dimensions has."""
        return tuple(row for row in self.cells if row.present(dims))

    def connections_for(self, dims: dict) -> tuple[tuple[str, str], ...]:
        """The connections (src, dst) a block of these dimensions has, in table order."""
        present = {row.local for row in self.rows_for(dims)}
        return tuple(conn[:2] for conn in self.connections
                     if conn[0] in present and conn[1] in present and (len(conn) < 3 or conn[2](dims)))

    def row(self, local: str) -> CellRow | None:
        return self._rows.get(local)

    def locals_with_heads(self, rule: str) -> tuple[str, ...]:
        return tuple(row.local for row in self.cells if row.head_rule() == rule)

    def locals_of_kind(self, kind: str) -> tuple[str, ...]:
        return tuple(row.local for row in self.cells if row.node_kind() == kind)

    def stateful(self) -> tuple[CellRow, ...]:
        """The rows whose cell type carries recurrent state, in execution order."""
        return tuple(row for row in self.cells if cell_type(row.cell_type).state)

    def required_weights(self) -> frozenset[str]:
        """The checkpoint names (block-relative) every block of this type has: what identifies it."""
        if "required" in self._names:
            return self._names["required"]
        names = set(self.signature)
        for row in self.cells:
            if row.when is None:
                names.update(n for n in (row.weight, row.bias) if n)
        return self._names.setdefault("required", frozenset(names))

    def known_weights(self) -> frozenset[str]:
        """Every name a row or the signature gives (a row present only at some sizes included), and each weight's
        bias (use_bias checkpoints add them); names under `owns` are known too (`knows`)."""
        if "known" in self._names:
            return self._names["known"]
        names = set(self.signature)
        for row in self.cells:
            for n in (row.weight, row.bias):
                if n:
                    names.add(n)
                    if n.endswith(".weight"):
                        names.add(n[: -len("weight")] + "bias")
        return self._names.setdefault("known", frozenset(names))

    def knows(self, name: str) -> bool:
        return name in self.known_weights() or (bool(self.owns) and name.startswith(self.owns))


# The block registry, keyed by layer type.
BLOCK_TYPES: dict[str, BlockTable] = {}
BLOCK_TABLES = BLOCK_TYPES  # the name the wiring package used before the registries were merged


def register_block_table(table: BlockTable) -> BlockTable:
    BLOCK_TYPES[table.name] = table
    return table


def attach_block(name: str, module: type, dims_of: Callable) -> BlockTable:
    """Give the registered block type `name` its nn.Module class and its config -> dimensions function."""
    table = block_table(name)
    table.module = module
    table.dims_of = dims_of
    return table


def block_table(name: str) -> BlockTable:
    try:
        return BLOCK_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown block type {name!r}; registered block types: {sorted(BLOCK_TYPES)}") from None


def detect_block_type(index: int, names, declared: str | None = None) -> str:
    """The registered block type of checkpoint block `index` from its tensor names (block-relative): the unique
    table whose required weights (`BlockTable.required_weights`) are all present, the most specific one where one
    table's requirements contain another's. `declared` (config.json's layer_types) wins, and is checked against the
    names. Every refusal names the block, the tensors missing or not belonging, and the closest types."""
    names = set(names)
    where = f"backbone.blocks.{index}."
    fits = [t for t in BLOCK_TYPES.values() if t.required_weights() <= names]
    if declared is not None:
        table = block_table(declared)
        if table not in fits:
            lacks = sorted(table.required_weights() - names)
            guess = f"; the tensors fit {_names_of(_most_specific(fits))}" if fits else ""
            raise ValueError(f"block {index}: config.json gives layer type {declared!r}, but the checkpoint lacks "
                             f"its {_listed(where, lacks)}{guess}")
    else:
        best = _most_specific(fits)
        if not best:
            raise ValueError(f"block {index}: its tensors fit no registered block type ({sorted(BLOCK_TYPES)}); "
                             f"closest: {_closest(where, names)}")
        if len(best) > 1:
            raise ValueError(f"block {index}: its tensors fit several block types ({_names_of(best)}); give "
                             "config.json's layer_types to choose")
        table = best[0]
    foreign = sorted(n for n in names if not table.knows(n))
    if foreign:
        near = {n: difflib.get_close_matches(n, table.known_weights(), n=1) for n in foreign[:3]}
        hint = "; ".join(f"{where}{n} (close: {where}{m[0]})" if m else where + n for n, m in near.items())
        raise ValueError(f"block {index} ({table.name}): {len(foreign)} tensor(s) that a {table.name!r} block does "
                         f"not have: {hint}{' ...' if len(foreign) > 3 else ''}")
    return table.name


def _most_specific(tables: list) -> list:
    """The tables whose required weights no other table's strictly contain."""
    return [t for t in tables if not any(t.required_weights() < u.required_weights() for u in tables)]


def _names_of(tables) -> str:
    return ", ".join(repr(t.name) for t in tables)


def _listed(where: str, names: list, limit: int = 3) -> str:
    shown = ", ".join(where + n for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _closest(where: str, names: set) -> str:
    """The two block types that the names come nearest to (fewest required weights missing, relative to their
    count), each with what it lacks and the tensors it does not have."""
    def gap(t):
        req = t.required_weights()
        return (len(req - names) / max(len(req), 1), sum(not t.knows(n) for n in names))

    parts = []
    for t in sorted(BLOCK_TYPES.values(), key=gap)[:2]:
        lacks = sorted(t.required_weights() - names)
        foreign = sorted(n for n in names if not t.knows(n))
        parts.append(f"{t.name!r} lacks {_listed(where, lacks)}"
                     + (f" and does not have {_listed(where, foreign)}" if foreign else ""))
    return "; ".join(parts)


def find_row(local: str) -> CellRow | None:
    """The row of block-local cell `local` in the first registered block type that has one (block types share the
    stream cells "in", "mid", "out" and the FFN's names, with the same kinds and head rules)."""
    for table in BLOCK_TYPES.values():
        row = table.row(local)
        if row is not None:
            return row
    return None


class HeadRuleSet:
    """The block-local names whose head rule is `rule` in any registered block type; read live, so a block type
    registered later (sLSTM, CfC, ...) counts."""

    def __init__(self, rule: str):
        self.rule = rule

    def __contains__(self, local) -> bool:
        row = find_row(local)
        return row is not None and row.head_rule() == self.rule

    def __iter__(self):
        seen = []
        for table in BLOCK_TYPES.values():
            seen += [r.local for r in table.cells if r.head_rule() == self.rule and r.local not in seen]
        return iter(seen)


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
    panels=(
        ("mlstm.igate", "exp", "input gate exp(i - m)"),
        ("mlstm.fgate", "sigmoid", "forget gate sigma(f)"),
        ("mlstm.ogate", "mean", "output gate sigma(o)"),
        ("mlstm.memory", "C_norm", "memory ||C||"),
        ("mlstm.memory", "n_norm", "normalizer ||n||"),
        ("mlstm.memory", "m", "stabilizer m"),
    ),
))


# sLSTM block (the original xLSTM's sLSTM block, blocks/slstm/block.py, in this package's naming): pre-LayerNorm,
# causal Conv1d, block-diagonal gates, the sLSTM memory with exponential gating and stabiliser, group norm, then a
# gated GELU FFN. The equations are in xlstm_viz/model/slstm_block.py and slstm_cell.py. The input and forget gates
# read the conv output, z and o the normed input (as officially). The memory's output is [c; n; m; h; raw_i; raw_f;
# raw_z; raw_o] per token (raw_g = W_g x + R_g h_{t-1} + b_g, the gates' full pre-activations inside the recurrence);
# the state_slice cells pick each one out, so they are probes with per-head stats like the gates.
def _slstm_gate(name: str, source: str) -> tuple[CellRow, tuple[str, str]]:
    return (CellRow(f"slstm.{name}", "headwise", f"slstm_layer.{name}.weight", lambda d: [d["num_heads"], d["DH"], d["DH"]],
                    features=lambda d: d["D"]), (source, f"slstm.{name}"))


def _slice(name: str, k: int, kind: str | None = None) -> CellRow:
    return CellRow(f"slstm.{name}", "state_slice", features=lambda d: d["D"], kind=kind,
                   extra=lambda d: {"offset": k * d["D"], "width": d["D"]})


SLSTM_STATES = ("c", "n", "m", "h")
SLSTM_RAW = ("raw_i", "raw_f", "raw_z", "raw_o")  # the memory's output after its states, in this order


_SLSTM_GATES = [_slstm_gate("igate", "slstm.conv"), _slstm_gate("fgate", "slstm.conv"),
                _slstm_gate("zgate", "slstm.norm_in"), _slstm_gate("ogate", "slstm.norm_in")]


def _has_conv(d: dict) -> bool:  # conv1d_kernel_size 0: no conv, the input and forget gates read the normed input
    return d["K"] > 0


def _has_ffn(d: dict) -> bool:  # an sLSTM block without a feed-forward: out = mid = x + GN(sLSTM(LN(x)))
    return d["act"] is not None


def _ffn(row: CellRow) -> CellRow:
    return replace(row, when=_has_ffn)

SLSTM_BLOCK = register_block_table(BlockTable(
    "slstm",
    cells=(
        CellRow("in", "block_input", features=lambda d: d["D"]),
        CellRow("slstm.norm_in", "layernorm", "norm_slstm.weight", lambda d: [d["D"]]),
        CellRow("slstm.conv", "causal_conv", "slstm_layer.conv1d.weight", lambda d: [d["D"], 1, d["K"]],
                bias="slstm_layer.conv1d.bias", heads="heads", when=_has_conv),
        *(row for row, _ in _SLSTM_GATES),
        # R and b are read by name (params), not fed by a connection: the gates' connections carry activations
        CellRow("slstm.memory", "slstm_memory", features=lambda d: 8 * d["D"],
                extra=lambda d: {"recurrent": "slstm_layer.recurrent_kernel", "recurrent_bias": "slstm_layer.bias",
                                 "num_heads": d["num_heads"]}),
        *(_slice(name, k) for k, name in enumerate(SLSTM_STATES)),
        *(_slice(name, 4 + k, kind="gate") for k, name in enumerate(SLSTM_RAW)),
        CellRow("slstm.norm", "group_norm", "slstm_layer.group_norm.weight", lambda d: [d["D"]],
                extra=lambda d: {"num_heads": d["num_heads"]}),
        CellRow("mid", "residual", features=lambda d: d["D"]),
        *map(_ffn, (
            CellRow("ffn.norm_in", "layernorm", "norm_ffn.weight", lambda d: [d["D"]]),
            CellRow("ffn.gate", "linear_act", "ffn.proj_up_gate.weight", lambda d: [d["F"], d["D"]],
                    extra=lambda d: {"act": d["act"]}),
            CellRow("ffn.up", "linear", "ffn.proj_up.weight", lambda d: [d["F"], d["D"]], kind="ffn"),
            CellRow("ffn.h", "product", features=lambda d: d["F"], kind="ffn"),
            CellRow("ffn.out", "linear", "ffn.proj_down.weight", lambda d: [d["D"], d["F"]], kind="ffn"),
        )),
        CellRow("out", "residual", features=lambda d: d["D"]),
    ),
    connections=(
        ("in", "slstm.norm_in"),
        ("slstm.norm_in", "slstm.conv"),
        *(conn for _, conn in _SLSTM_GATES),
        *(("slstm.norm_in", f"slstm.{g}", lambda d: not _has_conv(d)) for g in ("igate", "fgate")),
        *((f"slstm.{g}", "slstm.memory") for g in ("igate", "fgate", "zgate", "ogate")),
        *(("slstm.memory", f"slstm.{name}") for name in SLSTM_STATES + SLSTM_RAW),
        ("slstm.h", "slstm.norm"),
        ("in", "mid"),
        ("slstm.norm", "mid"),
        ("mid", "ffn.norm_in"),
        ("ffn.norm_in", "ffn.gate"),
        ("ffn.norm_in", "ffn.up"),
        ("ffn.gate", "ffn.h"),
        ("ffn.up", "ffn.h"),
        ("ffn.h", "ffn.out"),
        ("mid", "out"),
        ("ffn.out", "out"),
    ),
    dims=("D", "num_heads", "DH", "K", "F", "act"),
    signature=("slstm_layer.recurrent_kernel", "slstm_layer.bias"),  # read by the memory cell by name
    panels=(
        ("slstm.igate", "mean", "input gate W_i x"),
        ("slstm.fgate", "mean", "forget gate W_f x"),
        ("slstm.c", "mean", "cell state c"),
        ("slstm.n", "mean", "normalizer n"),
        ("slstm.m", "mean", "stabilizer m"),
        ("slstm.h", "mean", "hidden h"),
    ),
))


# The original xLSTM's mLSTM block (blocks/mlstm/layer.py; layer type "orig_mlstm") in this package's naming:
# pre-LayerNorm, up-projection to the inner width I into x_m and z, causal Conv1d, block-diagonal q/k/v
# (qkv_proj_blocksize), gates from [q; k; v], the mLSTM memory (k scaled by 1/sqrt(DH), as officially), group norm,
# learnable skip, SiLU(z) output gate, down-projection; no FFN. Equations: xlstm_viz/model/orig_mlstm_block.py.
def _qkv(name: str, source: str) -> tuple[CellRow, tuple[str, str]]:
    return (CellRow(f"mlstm.{name}", "headwise", f"mlstm_layer.{name}.weight",
                    lambda d: [d["I"] // d["BS"], d["BS"], d["BS"]], features=lambda d: d["I"], kind="projection"),
            (source, f"mlstm.{name}"))


def _orig_gate(name: str) -> CellRow:
    return CellRow(f"mlstm.{name}", "concat_linear", f"mlstm_layer.{name}.weight", lambda d: [d["num_heads"], 3 * d["I"]],
                   bias=f"mlstm_layer.{name}.bias")


_ORIG_QKV = [_qkv("q", "mlstm.conv"), _qkv("k", "mlstm.conv"), _qkv("v", "mlstm.up")]

ORIG_MLSTM_BLOCK = register_block_table(BlockTable(
    "orig_mlstm",
    cells=(
        CellRow("in", "block_input", features=lambda d: d["D"]),
        CellRow("mlstm.norm_in", "layernorm", "norm_mlstm.weight", lambda d: [d["D"]]),
        CellRow("mlstm.up", "linear", "mlstm_layer.proj_up.weight", lambda d: [d["I"], d["D"]]),
        CellRow("mlstm.z", "linear", "mlstm_layer.proj_z.weight", lambda d: [d["I"], d["D"]]),
        CellRow("mlstm.conv", "causal_conv", "mlstm_layer.conv1d.weight", lambda d: [d["I"], 1, d["K"]],
                bias="mlstm_layer.conv1d.bias", heads="heads"),
        *(row for row, _ in _ORIG_QKV),
        _orig_gate("igate"),
        _orig_gate("fgate"),
        CellRow("mlstm.memory", "mlstm_memory", features=lambda d: d["I"], heads="heads",
                extra=lambda d: {"num_heads": d["num_heads"], "scale_k": True}),
        CellRow("mlstm.norm", "group_norm", "mlstm_layer.outnorm.weight", lambda d: [d["I"]],
                extra=lambda d: {"num_heads": d["num_heads"]}),
        CellRow("mlstm.skip", "learnable_skip", "mlstm_layer.learnable_skip", lambda d: [d["I"]]),
        CellRow("mlstm.h", "silu_gated", features=lambda d: d["I"], heads="heads"),
        CellRow("mlstm.out", "linear", "mlstm_layer.proj_down.weight", lambda d: [d["D"], d["I"]], kind="residual"),
        CellRow("out", "residual", features=lambda d: d["D"]),
    ),
    connections=(
        ("in", "mlstm.norm_in"),
        ("mlstm.norm_in", "mlstm.up"),
        ("mlstm.norm_in", "mlstm.z"),
        ("mlstm.up", "mlstm.conv"),
        *(conn for _, conn in _ORIG_QKV),
        *((f"mlstm.{s}", f"mlstm.{g}") for g in ("igate", "fgate") for s in "qkv"),  # [q; k; v] in this order
        *((f"mlstm.{c}", "mlstm.memory") for c in ("q", "k", "v", "igate", "fgate")),
        ("mlstm.memory", "mlstm.norm"),
        ("mlstm.norm", "mlstm.skip"),  # GN(h~) + s * x_c: the norm first, then the conv output
        ("mlstm.conv", "mlstm.skip"),
        ("mlstm.skip", "mlstm.h"),  # (...) * SiLU(z)
        ("mlstm.z", "mlstm.h"),
        ("mlstm.h", "mlstm.out"),
        ("in", "out"),
        ("mlstm.out", "out"),
    ),
    dims=("D", "I", "num_heads", "BS", "K"),
    panels=(
        ("mlstm.igate", "value", "input gate i~"),
        ("mlstm.fgate", "value", "forget gate f~"),
        ("mlstm.memory", "C_norm", "memory ||C||"),
        ("mlstm.memory", "n_norm", "normalizer ||n||"),
        ("mlstm.memory", "m", "stabilizer m"),
    ),
))


# NCP-wired neuron blocks (xlstm_viz/model/neuron_block.py has the equations): sensory neurons = the normed block
# input, inter -> command -> motor neurons wired by the block's AutoNCP (masks, and for the LTC the reversal
# potentials' polarity, are read live from the wiring), motor neurons -> W_out -> residual. `ncp.neurons` is per
# neuron ("features": one statistic per neuron). The cfc and ltc tables differ only in the neuron cell and the
# motor readout (the CfC's motor neurons are its output; the LTC's go through ncps's affine output mapping).
# A neuron cell with several per-neuron outputs (`memory`: the ncp_slstm neurons' h, c, n, m and gates, concatenated)
# is the stateful cell `ncp.memory`, and `ncp.neurons` plus one cell per further output are slices of it.
def ncp_block_table(name: str, neurons: str, motor: CellRow, activity: str,
                    memory: tuple[tuple[str, str], ...] = (), signature: tuple[str, ...] = ()) -> BlockTable:
    """memory: (cell local name, title) of each per-neuron output of the neuron cell `neurons`, in its output order;
    the first is "ncp.neurons". Empty: `neurons` outputs ncp.neurons itself. signature: the neuron cell's own
    checkpoint names (under "neurons.") that every block of this type has, which tell the neuron tables apart."""
    # "inside": the probe whose interventions with inside=True the neuron cell applies in its recurrence
    per_neuron = {"prefix": "neurons.rnn_cell" if not memory else "neurons", "inside": "ncp.neurons"}
    neuron_extra = lambda d: {**per_neuron, "units": d["U"], "inter": d["I"], "command": d["C"], "motor": d["M"]}
    if memory:
        if memory[0][0] != "ncp.neurons":
            raise ValueError(f"block table {name!r}: the neuron cell's first output must be 'ncp.neurons'")
        cells = (CellRow("ncp.memory", neurons, features=lambda d: len(memory) * d["U"], heads="features",
                         extra=neuron_extra),
                 *(CellRow(local, "state_slice", features=lambda d: d["U"], heads="features", kind="memory",
                           extra=lambda d, k=k: {"offset": k * d["U"], "width": d["U"]})
                   for k, (local, _) in enumerate(memory)))
        into = (("ncp.norm_in", "ncp.memory"), *(("ncp.memory", local) for local, _ in memory))
        panels = tuple((local, "mean", f"{title} (per neuron)") for local, title in memory[:4])
    else:
        cells = (CellRow("ncp.neurons", neurons, features=lambda d: d["U"], extra=neuron_extra),)
        into = (("ncp.norm_in", "ncp.neurons"),)
        panels = (("ncp.neurons", "mean", f"neuron {activity} (per neuron)"),)
    return BlockTable(
        name,
        cells=(
            CellRow("in", "block_input", features=lambda d: d["D"]),
            CellRow("ncp.norm_in", "rmsnorm", "norm_ncp.weight", lambda d: [d["D"]]),
            *cells,
            motor,
            CellRow("ncp.out", "linear", "out_proj.weight", lambda d: [d["D"], d["M"]], kind="residual"),
            CellRow("out", "residual", features=lambda d: d["D"]),
        ),
        connections=(
            ("in", "ncp.norm_in"),
            *into,
            ("ncp.neurons", "ncp.motor"),
            ("ncp.motor", "ncp.out"),
            ("in", "out"),
            ("ncp.out", "out"),
        ),
        dims=("D", "U", "I", "C", "M"),
        panels=(*panels, ("ncp.motor", "mean", "motor neurons")),
        signature=signature,
        owns=("neurons.",),
    )


CFC_BLOCK = register_block_table(ncp_block_table(
    "cfc", "cfc_neurons",
    CellRow("ncp.motor", "state_slice", features=lambda d: d["M"], heads="features",
            extra=lambda d: {"offset": 0, "width": d["M"]}),  # motor neurons are ids 0..M-1 (ncps numbering)
    "activity",
    # ncps's WiredCfCCell: one CfCCell per NCP layer, ff1 in every mode (ff2 / time_a / time_b not in "pure")
    signature=("neurons.rnn_cell.layer_0.ff1.weight", "neurons.rnn_cell.layer_0.ff1.bias")))
LTC_BLOCK = register_block_table(ncp_block_table(
    "ltc", "ltc_neurons",
    CellRow("ncp.motor", "ltc_readout", features=lambda d: d["M"], heads="features",
            extra=lambda d: {"prefix": "neurons.rnn_cell", "motor": d["M"]}),  # output_w * v[:M] + output_b
    "potential",
    # ncps's LTCCell parameters that every input / output mapping has (the mappings' own are optional)
    signature=tuple(f"neurons.rnn_cell.{n}" for n in ("gleak", "vleak", "cm", "w", "sigma", "mu", "sensory_w",
                                                       "sensory_sigma", "sensory_mu"))))

# ncp_slstm (xlstm_viz/model/ncp_slstm_block.py): the same NCP, each neuron an sLSTM scalar memory cell. Its memory
# cell's outputs, in order (each [B, S, units] by neuron id); the gates are the raw pre-activations.
NCP_SLSTM_OUTPUTS = ("h", "c", "n", "m", "i", "f", "z", "o")
_NCP_SLSTM_CELLS = (("ncp.neurons", "hidden h"), ("ncp.c", "cell state c"), ("ncp.n", "normalizer n"),
                    ("ncp.m", "stabilizer m"), ("ncp.igate", "input gate raw i"), ("ncp.fgate", "forget gate raw f"),
                    ("ncp.zgate", "cell input raw z"), ("ncp.ogate", "output gate raw o"))
NCP_SLSTM_BLOCK = register_block_table(ncp_block_table(
    "ncp_slstm", "ncp_slstm_memory",
    CellRow("ncp.motor", "state_slice", features=lambda d: d["M"], heads="features",
            extra=lambda d: {"offset": 0, "width": d["M"]}),
    "hidden h", memory=_NCP_SLSTM_CELLS,
    signature=tuple(f"neurons.layer_0.{n}" for n in ("W", "R", "b"))))  # each NCP layer's sLSTM gates

# ncp_mlstm (xlstm_viz/model/ncp_mlstm_block.py): each NCP layer one mLSTM head whose value features are its neurons.
# Its memory cell's outputs, in order: h = o * r, the readout r (memory plus in-layer synapses), the output gate o.
NCP_MLSTM_OUTPUTS = ("h", "r", "o")
NCP_MLSTM_BLOCK = register_block_table(ncp_block_table(
    "ncp_mlstm", "ncp_mlstm_memory",
    CellRow("ncp.motor", "state_slice", features=lambda d: d["M"], heads="features",
            extra=lambda d: {"offset": 0, "width": d["M"]}),
    "hidden h", memory=(("ncp.neurons", "hidden h = o r"), ("ncp.readout", "memory readout r"),
                        ("ncp.ogate", "output gate o")),
    signature=tuple(f"neurons.layer_0.{n}" for n in ("q", "k", "v", "gates", "lateral", "o"))))
