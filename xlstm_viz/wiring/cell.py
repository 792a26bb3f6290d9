"""`CellWiring`: the cells inside one block and the connections between them.

A cell is one named computation (`blocks.3.mlstm.q`, see the stable names in the project brief); a
connection `src -> dst` is an input of `dst`. A connection that feeds a checkpoint weight names it
(`weight`, block-relative, e.g. "mlstm_layer.q.weight") and its `shape`; otherwise its shape is
`(features,)` of the activation it carries. Each connection has a polarity (+1/-1), an on/off switch and
an NCPS-style sparsity: a seeded element mask over that weight (or activation) that multiplies it.

Sharing declarations (the wiring validates and stores them; the executor applies them at every forward):

* `share_featurizer(cells)`: the first cell *owns* the weight; every other cell computes its features
  with the owner's weight tensor instead of its own (e.g. q and k share one projection). The weights
  must have equal shapes. Each borrower's incoming connection keeps its own polarity and mask, and the
  borrower its own bias (if it has one).
* `share_feature_groups(cell, groups)`: the cell's features are split into G equal contiguous groups
  (for q/k/v with G = num_heads these are the heads). `groups` is G (all groups use group 0's
  features) or a partition of range(G) such as [[0, 1], [2, 3]] (each part uses its first group's
  features). For a weighted cell that means tying that group's weight rows (row r of the weight is
  feature r: for q/k/v/gates/projections the output features, for a norm its per-feature scale; a bias
  stays per feature); for a weightless cell its activations (its output's last axis). G must divide
  the cell's feature count. `feature_group_index(cell)` is the gather index the executor uses.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from . import checks, documents
from .block_types import CELL_TYPES, block_table
from .edits import Change, Editable
from .masks import element_mask, name_seed

_FORMAT = "xlstm_viz.wiring.cell/1"
_CONNECTION_FIELDS = ("polarity", "sparsity", "seed", "enabled")


@dataclass(frozen=True)
class CellSpec:
    """One cell: full stable `name`, `cell_type` (linear, gate, rmsnorm, ...), `params` (JSON-safe: the
    checkpoint weight it owns under "weight"/"shape", its "features" count, ...), and output polarity."""

    name: str
    cell_type: str
    params: dict = field(default_factory=dict)
    polarity: int = 1

    @property
    def features(self) -> int | None:
        return self.params.get("features")


@dataclass(frozen=True)
class Connection:
    """`src -> dst` with polarity, sparsity mask (seeded, over `shape`), enabled flag and the weight it feeds."""

    src: str
    dst: str
    polarity: int = 1
    sparsity: float = 0.0
    seed: int = 0
    enabled: bool = True
    weight: str | None = None
    shape: tuple = ()
    _mask: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        checks.polarity(f"polarity of {self.name}", self.polarity, allow_zero=False)
        checks.number(f"sparsity of {self.name}", self.sparsity)
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity of {self.name} must be in [0, 1), got {self.sparsity!r}")
        checks.count(f"seed of {self.name}", self.seed, minimum=0)
        if not isinstance(self.enabled, bool):
            raise TypeError(f"enabled of {self.name} must be a bool, got {self.enabled!r}")

    @property
    def name(self) -> str:
        return f"{self.src}->{self.dst}"

    @property
    def mask(self) -> np.ndarray | None:
        """float32 mask of `shape` with exactly round(sparsity * size) zeros, or None at sparsity 0.
        A pure function of (seed, shape, sparsity); computed once per connection object."""
        if self.sparsity == 0:
            return None
        if self._mask is None:
            object.__setattr__(self, "_mask", element_mask(self.seed, self.shape, self.sparsity))
        return self._mask

    def to_json(self) -> dict:
        return {
            "src": self.src,
            "dst": self.dst,
            "polarity": self.polarity,
            "sparsity": self.sparsity,
            "seed": self.seed,
            "enabled": self.enabled,
            "weight": self.weight,
            "shape": list(self.shape),
        }


class CellWiring(Editable):
    """Cells and connections of one block; build with `mlstm_block` (or `add_cell` / `connect`)."""

    def __init__(self, prefix: str = "", seed: int = 0):
        self.prefix = prefix
        self.seed = checks.count("seed", seed, minimum=0)
        self.cells: dict[str, CellSpec] = {}
        self.connections: dict[tuple[str, str], Connection] = {}
        self._featurizers: dict[str, str] = {}
        self._feature_groups: dict[str, list[list[int]]] = {}
        self._init_edits()

    # -- construction ----------------------------------------------------------------------------
    def add_cell(self, name: str, cell_type: str, params: dict | None = None, polarity: int = 1) -> CellSpec:
        if name in self.cells:
            raise ValueError(f"cell {name!r} already exists")
        if not isinstance(cell_type, str) or cell_type not in CELL_TYPES:  # refused here, not by the executor
            raise ValueError(f"cell {name!r}: unknown cell type {cell_type!r}, so the model could not run it; "
                             f"registered cell types: {sorted(CELL_TYPES)}")
        spec = CellSpec(name, cell_type, dict(params or {}), checks.polarity(f"polarity of {name}", polarity, allow_zero=False))
        self.cells[name] = spec
        return spec

    def connect(self, src: str, dst: str, weight: str | None = None, shape=None, polarity: int = 1,
                sparsity: float = 0.0, seed: int | None = None) -> Connection:
        """Add `src -> dst`; without `shape` it is `(features of src,)`. The default seed is derived
        from the wiring seed and the connection name, so equal shapes get different masks.
        `add_cell`/`connect` build the wiring; they are not edits (no undo, no listeners, no version)."""
        self._require_cell(src)
        self._require_cell(dst)
        if (src, dst) in self.connections:
            raise ValueError(f"connection {src}->{dst} already exists")
        if shape is None:
            features = self.cells[src].features
            if features is None:
                raise ValueError(f"connection {src}->{dst} needs a shape: cell {src} declares no 'features'")
            shape = (features,)
        graph = self.graph()
        graph.add_edge(src, dst)
        if not nx.is_directed_acyclic_graph(graph):
            cycle = nx.find_cycle(graph, source=dst)
            raise ValueError(f"connection {src}->{dst} would create the cycle " + " -> ".join([cycle[0][0]] + [v for _, v in cycle]))
        seed = name_seed(self.seed, f"{src}->{dst}") if seed is None else seed
        connection = Connection(src, dst, polarity, sparsity, seed, True, weight, tuple(shape))
        self.connections[(src, dst)] = connection
        return connection

    @classmethod
    def mlstm_block(cls, index: int, embedding_dim: int, num_heads: int, qk_dim: int, v_dim: int, ffn_dim: int,
                    seed: int = 0) -> "CellWiring":
        """The cells of one xLSTM-Large block (mLSTM layer + SwiGLU FFN) under `blocks.{index}`,
        with the NX-AI checkpoint parameter names."""
        index = checks.count("index", index)
        D = checks.count("embedding_dim", embedding_dim, minimum=1)
        NH = checks.count("num_heads", num_heads, minimum=1)
        QK = checks.count("qk_dim", qk_dim, minimum=1)
        V = checks.count("v_dim", v_dim, minimum=1)
        F = checks.count("ffn_dim", ffn_dim, minimum=1)
        for name, dim in (("qk_dim", QK), ("v_dim", V)):
            if dim % NH:
                raise ValueError(f"{name}={dim} is not divisible by num_heads={NH}")
        return cls.from_table(block_table("mlstm"), index, {"D": D, "num_heads": NH, "QK": QK, "V": V, "F": F},
                              seed=seed)

    @classmethod
    def from_table(cls, table, index: int, dims: dict, seed: int = 0) -> "CellWiring":
        """The cells and connections of a block table (`block_types`) under `blocks.{index}`; a connection
        into a cell with a weight feeds that weight."""
        missing = [d for d in table.dims if d not in dims]
        if missing:
            raise ValueError(f"block type {table.name!r} needs the dimensions {missing}; got {sorted(dims)}")
        p = f"blocks.{index}"
        w = cls(prefix=p, seed=seed)
        for row in table.rows_for(dims):
            params = {}
            if row.weight is not None:
                shape = [int(s) for s in row.shape(dims)]
                # features: the first entry of the weight's shape, unless the row says (block-diagonal weights)
                features = int(row.features(dims)) if row.features is not None else shape[0]
                params = {"weight": row.weight, "shape": shape, "features": features}
                if row.bias is not None:
                    params.update(bias=row.bias, bias_shape=shape[:1])
            else:
                params = {"features": int(row.features(dims))}
            if row.extra is not None:
                params.update(row.extra(dims))
            w.add_cell(f"{p}.{row.local}", row.cell_type, params)
        for src, dst in table.connections_for(dims):
            spec = w.cells[f"{p}.{dst}"]
            if "weight" in spec.params:
                w.connect(f"{p}.{src}", spec.name, weight=spec.params["weight"], shape=spec.params["shape"])
            else:
                w.connect(f"{p}.{src}", spec.name, shape=(w.cells[f"{p}.{src}"].features,))
        return w

    # -- reading ---------------------------------------------------------------------------------
    def connection(self, src: str, dst: str) -> Connection:
        try:
            return self.connections[(src, dst)]
        except KeyError:
            names = [c.name for c in self.connections.values()]
            near = difflib.get_close_matches(f"{src}->{dst}", names, n=5, cutoff=0.5)
            raise KeyError(f"no connection {src}->{dst}; close: {near or names[:5]}") from None

    def inputs_of(self, name: str) -> list[Connection]:
        self._require_cell(name)
        return [c for c in self.connections.values() if c.dst == name]

    def outputs_of(self, name: str) -> list[Connection]:
        self._require_cell(name)
        return [c for c in self.connections.values() if c.src == name]

    def graph(self) -> nx.DiGraph:
        graph = nx.DiGraph()
        for spec in self.cells.values():
            graph.add_node(spec.name, cell_type=spec.cell_type, polarity=spec.polarity)
        for c in self.connections.values():
            graph.add_edge(c.src, c.dst, polarity=c.polarity, enabled=c.enabled, sparsity=c.sparsity)
        return graph

    def order(self) -> list[str]:
        """Topological order of the cells, ties broken by insertion order."""
        # Every trace asks for it; building only adds cells and connections and every edit bumps the version.
        key = (self.version, len(self.cells), len(self.connections))
        cached = self.__dict__.get("_order_cache")
        if cached is None or cached[0] != key:
            position = {name: i for i, name in enumerate(self.cells)}
            cached = self.__dict__["_order_cache"] = (
                key, tuple(nx.lexicographical_topological_sort(self.graph(), key=position.__getitem__)))
        return list(cached[1])

    def stages(self) -> list[list[str]]:
        """Topological generations (cells in one stage only depend on earlier stages), insertion-ordered."""
        position = {name: i for i, name in enumerate(self.cells)}
        return [sorted(g, key=position.__getitem__) for g in nx.topological_generations(self.graph())]

    def synapses(self) -> dict[tuple[str, str], int]:
        """{(src, dst): polarity} of the enabled connections (what `diff` compares)."""
        return {key: c.polarity for key, c in self.connections.items() if c.enabled}

    def shared_weights(self) -> dict[str, str]:
        """{cell: cell whose weight it uses} for every cell that borrows another cell's weight."""
        return dict(self._featurizers)

    def feature_groups(self) -> dict[str, list[list[int]]]:
        """{cell: partition of its G feature groups}; each part uses its first group's features."""
        return {cell: [list(part) for part in parts] for cell, parts in self._feature_groups.items()}

    # -- editing ---------------------------------------------------------------------------------
    def set_polarity(self, src: str, dst: str, polarity: int) -> None:
        polarity = checks.polarity("polarity", polarity, allow_zero=False)
        self._edit_connection("set_polarity", src, dst, polarity=polarity)

    def set_sparsity(self, src: str, dst: str, level: float, seed: int | None = None) -> None:
        """Mask round(level * size) elements of the connection's weight; `seed=None` keeps its seed."""
        level = checks.number(f"sparsity level of {src}->{dst}", level)
        if not 0.0 <= level < 1.0:
            raise ValueError(f"sparsity level of {src}->{dst} must be in [0, 1), got {level!r}")
        values = {"sparsity": level}
        if seed is not None:
            values["seed"] = checks.count("seed", seed, minimum=0)
        self._edit_connection("set_sparsity", src, dst, **values)

    def set_enabled(self, src: str, dst: str, enabled: bool) -> None:
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be a bool, got {enabled!r}")
        self._edit_connection("set_enabled", src, dst, enabled=enabled)

    def set_cell_polarity(self, name: str, polarity: int) -> None:
        self._require_cell(name)
        polarity = checks.polarity("polarity", polarity, allow_zero=False)
        self._commit("set_cell_polarity", [Change(("cell", name, "polarity"), self.cells[name].polarity, polarity)])

    def _edit_connection(self, kind: str, src: str, dst: str, **values) -> None:
        current = self.connection(src, dst)
        self._commit(kind, [Change(("connection", src, dst, k), getattr(current, k), v) for k, v in values.items()])

    def share_featurizer(self, cells) -> None:
        """cells[0] owns the weight; the others use it (see module docstring). One undoable edit."""
        cells = list(cells)
        if len(cells) < 2 or len(set(cells)) != len(cells):
            raise ValueError(f"share_featurizer needs at least two distinct cells, got {cells}")
        for name in cells:
            self._require_cell(name)
        unweighted = [n for n in cells if "weight" not in self.cells[n].params]
        if unweighted:
            raise ValueError(f"cells {unweighted} have no weight of their own, so they cannot share a featurizer")
        owner, borrowers = cells[0], cells[1:]
        for name in borrowers:
            self._check_featurizer(name, owner, self._featurizers, "cannot share the featurizer")
        self._commit("share_featurizer", [Change(("featurizer", n), None, owner) for n in borrowers])

    def _check_featurizer(self, borrower: str, owner: str, current: dict, where: str) -> None:
        """`borrower` may use `owner`'s weight given the sharing `current` (a chain or a shape mismatch is refused)."""
        for name in (borrower, owner):
            if name not in self.cells:
                raise ValueError(f"{where}: no cell {name!r}")
            if "weight" not in self.cells[name].params:
                raise ValueError(f"{where}: cell {name} has no weight of its own, so it cannot share a featurizer")
        if borrower == owner:
            raise ValueError(f"{where}: a cell cannot borrow its own weight")
        owner_shape, shape = self.cells[owner].params.get("shape"), self.cells[borrower].params.get("shape")
        if list(shape or []) != list(owner_shape or []):
            raise ValueError(f"{where}: {owner} {list(owner_shape or [])} with {borrower} {list(shape or [])}: weight shapes differ")
        if owner in current:
            raise ValueError(f"{where}: {owner} already uses the weight of {current[owner]}; it cannot own a shared weight")
        if current.get(borrower) not in (None, owner):
            raise ValueError(f"{where}: {borrower} already uses the weight of {current[borrower]}")
        lenders = sorted(b for b, o in current.items() if o == borrower)
        if lenders:
            raise ValueError(f"{where}: {borrower} already lends its weight to {lenders}; it cannot borrow one")

    def unshare_featurizer(self, cell: str) -> None:
        """`cell` uses its own weight again."""
        if cell not in self._featurizers:
            raise ValueError(f"{cell} does not use another cell's weight")
        self._commit("unshare_featurizer", [Change(("featurizer", cell), self._featurizers[cell], None)])

    def share_feature_groups(self, cell: str, groups) -> None:
        """Tie feature groups of `cell` (see module docstring). `groups`: G or a partition of range(G)."""
        self._require_cell(cell)
        if isinstance(groups, (int, np.integer)) and not isinstance(groups, bool):
            partition = [list(range(checks.count("groups", groups, minimum=2)))]
        else:
            partition = [[checks.count("group index", g) for g in part] for part in groups]
        self._check_partition(cell, partition, f"groups for {cell}")
        self._commit("share_feature_groups", [Change(("feature_groups", cell), self._feature_groups.get(cell), partition)])

    def _check_partition(self, cell: str, partition, where: str) -> None:
        if cell not in self.cells:
            raise ValueError(f"{where}: no cell {cell!r}")
        features = self.cells[cell].features
        if features is None:
            raise ValueError(f"cell {cell} declares no 'features', so it has no feature groups")
        if not isinstance(partition, list) or not all(isinstance(p, list) for p in partition):
            raise ValueError(f"{where} must be a list of lists of group indices, got {partition!r}")
        flat = sorted(g for part in partition for g in part)
        count = len(flat)
        if (any(type(g) is not int for g in flat) or flat != list(range(count)) or any(not part for part in partition)
                or count < 2):
            raise ValueError(f"{where} must partition range(G), G >= 2, with non-empty parts, got {partition}")
        if features % count:
            raise ValueError(f"cell {cell} has {features} features, which do not split into {count} equal groups")

    def feature_group_index(self, cell: str) -> np.ndarray | None:
        """int32 index over the cell's features that applies its tied groups (None if it has none): feature f reads
        feature index[f], so every group of a part reads its part's first group. The executor gathers a weighted
        cell's weight rows with it (axis 0; a bias stays per feature), a weightless cell's output features."""
        self._require_cell(cell)
        parts = self._feature_groups.get(cell)
        if parts is None:
            return None
        size = self.cells[cell].features // sum(len(part) for part in parts)
        index = np.arange(self.cells[cell].features, dtype=np.int32)
        for part in parts:
            for group in part:
                index[group * size:(group + 1) * size] = np.arange(part[0] * size, (part[0] + 1) * size)
        return index

    def unshare_feature_groups(self, cell: str) -> None:
        if cell not in self._feature_groups:
            raise ValueError(f"{cell} has no shared feature groups")
        self._commit("unshare_feature_groups", [Change(("feature_groups", cell), self._feature_groups[cell], None)])

    def _apply_change(self, target, value) -> None:
        kind = target[0]
        if kind == "connection":
            _, src, dst, name = target
            self.connections[(src, dst)] = replace(self.connections[(src, dst)], **{name: value})
        elif kind == "cell":
            _, name, attribute = target
            self.cells[name] = replace(self.cells[name], **{attribute: value})
        elif kind in ("featurizer", "feature_groups"):
            store = self._featurizers if kind == "featurizer" else self._feature_groups
            if value is None:
                store.pop(target[1], None)
            else:
                store[target[1]] = value
        else:
            raise ValueError(f"unknown edit target {target!r}")

    def _require_cell(self, name: str) -> None:
        if name not in self.cells:
            near = difflib.get_close_matches(str(name), list(self.cells), n=3, cutoff=0.5)
            raise KeyError(f"no cell {name!r}; close: {near or list(self.cells)[:3]}")

    # -- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "prefix": self.prefix,
            "seed": self.seed,
            "cells": [{"name": c.name, "cell_type": c.cell_type, "params": c.params, "polarity": c.polarity} for c in self.cells.values()],
            "connections": [c.to_json() for c in self.connections.values()],
            "featurizers": self._featurizers,
            "feature_groups": self._feature_groups,
            "edits": self._edits_to_json(),
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict) -> "CellWiring":
        """Rebuild from `to_dict()`, validated first (`documents`): types, cells named under the prefix,
        connections between known cells with the shapes they mask, no cycle, valid sharing, and an edit history
        consistent with the document; errors name the field and value."""
        what = "CellWiring document"
        doc = documents.parse(documents.CellWiringDoc, data, what, _FORMAT)
        wiring = cls(doc.prefix, doc.seed)
        for i, c in enumerate(doc.cells):
            where = f"{what}: cells[{i}] {c.name!r}"
            if doc.prefix and not c.name.startswith(doc.prefix + "."):
                raise ValueError(f"{where}: cell names start with the prefix {doc.prefix + '.'!r}")
            if c.name in wiring.cells:
                raise ValueError(f"{where}: the cell is listed twice")
            _check_cell_params(c.params, where)
            wiring.add_cell(c.name, c.cell_type, c.params, c.polarity)
        for i, c in enumerate(doc.connections):
            where = f"{what}: connections[{i}] {c.src}->{c.dst}"
            for end in (c.src, c.dst):
                if end not in wiring.cells:
                    near = difflib.get_close_matches(end, list(wiring.cells), n=3, cutoff=0.5)
                    raise ValueError(f"{where}: unknown cell {end!r}; close: {near or list(wiring.cells)[:3]}")
            if (c.src, c.dst) in wiring.connections:
                raise ValueError(f"{where}: the connection is listed twice")
            wiring._check_connection_shape(c, where)
            wiring.connections[(c.src, c.dst)] = Connection(**{**c.model_dump(), "shape": tuple(c.shape)})
        graph = wiring.graph()
        if not nx.is_directed_acyclic_graph(graph):
            cycle = nx.find_cycle(graph)
            path = " -> ".join([cycle[0][0]] + [v for _, v in cycle])
            raise ValueError(f"{what}: connections form the cycle {path} (the edge {cycle[-1][0]}->{cycle[-1][1]} points back)")
        for borrower, owner in doc.featurizers.items():
            rest = {b: o for b, o in doc.featurizers.items() if b != borrower}
            wiring._check_featurizer(borrower, owner, rest, f"{what}: featurizers[{borrower!r}]")
        for cell, partition in doc.feature_groups.items():
            wiring._check_partition(cell, partition, f"{what}: feature_groups[{cell!r}]")
        wiring._featurizers = dict(doc.featurizers)
        wiring._feature_groups = {k: [list(p) for p in v] for k, v in doc.feature_groups.items()}
        documents.check_history(doc.edits, what, wiring._read_target, wiring._check_value)
        wiring._edits_from_json(data["edits"])
        return wiring

    def _check_connection_shape(self, c, where: str) -> None:
        if c.weight is not None:
            params = self.cells[c.dst].params
            if params.get("weight") != c.weight:
                raise ValueError(f"{where}: feeds weight {c.weight!r}, but cell {c.dst} owns {params.get('weight')!r}")
            if list(c.shape) != list(params.get("shape", [])):
                raise ValueError(f"{where}: shape {list(c.shape)} differs from the weight's shape {params.get('shape')}")
        else:
            features = self.cells[c.src].features
            if features is not None and list(c.shape) != [features]:
                raise ValueError(f"{where}: shape {list(c.shape)} differs from the {features} features of {c.src}")

    def _read_target(self, target: tuple):
        kind = target[0]
        if kind == "connection" and len(target) == 4:
            _, src, dst, name = target
            if name not in _CONNECTION_FIELDS:
                raise ValueError(f"connection field {name!r} is not editable; editable: {_CONNECTION_FIELDS}")
            if (src, dst) not in self.connections:
                raise ValueError(f"no connection {src}->{dst}")
            return getattr(self.connections[(src, dst)], name)
        if kind == "cell" and len(target) == 3 and target[2] == "polarity":
            if target[1] not in self.cells:
                raise ValueError(f"no cell {target[1]!r}")
            return self.cells[target[1]].polarity
        if kind in ("featurizer", "feature_groups") and len(target) == 2:
            if target[1] not in self.cells:
                raise ValueError(f"no cell {target[1]!r}")
            store = self._featurizers if kind == "featurizer" else self._feature_groups
            return store.get(target[1])
        raise ValueError("a cell wiring target is ['connection', src, dst, field], ['cell', name, 'polarity'], "
                         "['featurizer', cell] or ['feature_groups', cell]")

    def _check_value(self, target, value, where: str) -> None:
        kind = target[0]
        try:
            if kind == "connection":
                name = target[3]
                if name == "polarity" or kind == "cell":
                    checks.polarity("polarity", value, allow_zero=False)
                    if type(value) is not int:
                        raise ValueError(f"polarity must be the integer -1 or +1, got {value!r}")
                elif name == "sparsity":
                    checks.number("sparsity", value, minimum=0.0, below=1.0)
                elif name == "seed":
                    checks.count("seed", value, minimum=0, maximum=2**32 - 1)
                elif name == "enabled":
                    checks.flag("enabled", value)
            elif kind == "cell":
                if type(value) is not int or value not in (-1, 1):
                    raise ValueError(f"polarity must be the integer -1 or +1, got {value!r}")
            elif kind == "featurizer" and value is not None:
                if not isinstance(value, str) or value not in self.cells:
                    raise ValueError(f"no cell {value!r} to borrow a weight from")
                self._check_featurizer(target[1], value, {}, "featurizer")
            elif kind == "feature_groups" and value is not None:
                self._check_partition(target[1], value, "feature groups")
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where} = {value!r}: {err}") from None

    def _check_change_value(self, target, value, where) -> None:  # Editable.apply_edit
        self._check_value(target, value, where)

    @classmethod
    def from_json(cls, text: str) -> "CellWiring":
        return cls.from_dict(json.loads(text))

    def save(self, path) -> None:
        Path(path).write_text(self.to_json(indent=1))

    @classmethod
    def load(cls, path) -> "CellWiring":
        return cls.from_json(Path(path).read_text())

    def __repr__(self) -> str:
        return f"CellWiring({self.prefix!r}, {len(self.cells)} cells, {len(self.connections)} connections, version={self.version})"


def _check_cell_params(params: dict, where: str) -> None:
    features = params.get("features")
    if features is not None and (type(features) is not int or features < 1):
        raise ValueError(f"{where}: params.features must be a positive integer, got {features!r}")
    if "weight" in params:
        if not isinstance(params["weight"], str):
            raise ValueError(f"{where}: params.weight must be a parameter name, got {params['weight']!r}")
        shape = params.get("shape")
        if not isinstance(shape, list) or not shape or any(type(d) is not int or d < 1 for d in shape):
            raise ValueError(f"{where}: params.shape must be a list of positive integers, got {shape!r}")
