"""`BlockWiring`: the model at block level, embedding -> blocks.0 .. blocks.N-1 -> out_norm -> lm_head.

Executor semantics (the model's executor implements them; stated here because the wiring defines them):

* The residual stream always passes through every node in `nodes` order (the identity path cannot be
  cut). For a block j, `contribution_j = block_j(x) - x`, where x is the stream entering block j.
* An edge (j -> k) adds `polarity * enabled * contribution_j` to the stream entering k. The default
  residual edges blocks.j -> blocks.j+1 therefore reproduce the plain model; disabling one drops that
  block's update, polarity -1 subtracts it, and a skip edge (j -> k, k further on) adds block j's update
  again at k.
* For the non-residual nodes the contribution is the node's output: the stream before `embedding` is
  zero, so edge embedding -> blocks.0 carries the embeddings; `lm_head` is applied to what its incoming
  edges carry from `out_norm`, i.e. out_norm(stream).

Because the identity path runs through every node in order, a skip may only point forward; one that
points back would form a cycle and is refused with an error naming the cycle. Residual edges can be
disabled or flipped but not removed; skip edges can be removed.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from . import checks, documents
from .edits import Change, Editable
from .headers import checkpoint_shapes, present, read_json_object
from ..dims import mlstm_block_dims
from .block_types import BLOCK_TYPES, detect_block_type

_FORMAT = "xlstm_viz.wiring.block/1"
_BLOCK_KEY = re.compile(r"^backbone\.blocks\.(\d+)\.(.+)$")
EDGE_KINDS = ("residual", "skip")
@dataclass(frozen=True)
class Edge:
    """One edge of the block graph; see the module docstring for what it means to the executor."""

    src: str
    dst: str
    polarity: int = 1
    enabled: bool = True
    kind: str = "residual"

    def state(self) -> dict:
        return {"polarity": self.polarity, "enabled": self.enabled, "kind": self.kind}


@dataclass(frozen=True)
class BlockSpec:
    """One block: its index, layer type (a key of `block_types.BLOCK_TYPES`), dimensions and parameter shapes
    (names relative to `backbone.blocks.{index}.`; empty for a wiring made from a config)."""

    index: int
    block_type: str
    dims: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"blocks.{self.index}"


def block_type_of(index: int, names, declared: str | None = None) -> str:
    """The block type of a block's parameter names, from the block registry (`block_types.detect_block_type`: the
    table whose checkpoint names are all there; `declared`, config.json's, is checked against them)."""
    return detect_block_type(index, names, declared)


def declared_layer_types(config: dict, where) -> list[str] | None:
    """config.json's per-block layer types (`layer_types`, LFM2's spelling, or `block_types`); None when it gives
    neither. The two spellings must agree, and every entry must be a registered block type."""
    given = {k: config[k] for k in ("layer_types", "block_types") if config.get(k) is not None}
    if not given:
        return None
    if len(given) == 2 and given["layer_types"] != given["block_types"]:
        raise ValueError(f"{where}: layer_types {given['layer_types']!r} and block_types {given['block_types']!r} "
                         "disagree; give one of them")
    key, types = next(iter(given.items()))
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise ValueError(f"{where}: {key} must be a list of layer type names, got {types!r}")
    for j, t in enumerate(types):
        if t not in BLOCK_TYPES:
            raise ValueError(f"{where}: {key}[{j}] is {t!r}, not a registered block type {sorted(BLOCK_TYPES)}")
    return types


def _mlstm_dims(index: int, params: dict) -> dict:
    def shape(name):
        if name not in params:
            raise ValueError(f"mLSTM block {index}: missing parameter backbone.blocks.{index}.{name}")
        return params[name]

    q = shape("mlstm_layer.q.weight")
    dims = {
        "embedding_dim": q[1],
        "qk_dim": q[0],
        "v_dim": shape("mlstm_layer.v.weight")[0],
        "num_heads": shape("mlstm_layer.igate_preact.weight")[0],
    }
    if "ffn.proj_up.weight" in params:
        dims["ffn_dim"] = params["ffn.proj_up.weight"][0]
    return dims


class BlockWiring(Editable):
    """Block-level wiring graph with editable residual and skip edges (see module docstring)."""

    def __init__(self, blocks, config: dict | None = None, source: str | None = None, model_params: dict | None = None):
        self.blocks: tuple[BlockSpec, ...] = tuple(blocks)
        for position, block in enumerate(self.blocks):
            if block.index != position:
                raise ValueError(f"blocks must be numbered 0..N-1 in order; position {position} holds block {block.index}")
        self.config = dict(config or {})
        self.source = source
        self.model_params = dict(model_params or {})
        self.nodes: tuple[str, ...] = ("embedding", *(b.name for b in self.blocks), "out_norm", "lm_head")
        self._position = {node: i for i, node in enumerate(self.nodes)}
        self._edges: dict[tuple[str, str], Edge] = {}
        for src, dst in zip(self.nodes, self.nodes[1:]):
            self._edges[(src, dst)] = Edge(src, dst)
        self._init_edits()

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path) -> "BlockWiring":
        """Read config.json (if present), the safetensors index and shard headers; never tensor data."""
        folder = Path(path)
        config_path = folder / "config.json"
        config = read_json_object(config_path, "config.json") if present(config_path) else {}
        shapes = checkpoint_shapes(folder)
        per_block: dict[int, dict[str, tuple]] = {}
        model_params = {}
        for name, shape in shapes.items():
            match = _BLOCK_KEY.match(name)
            if match:
                per_block.setdefault(int(match.group(1)), {})[match.group(2)] = shape
            else:
                model_params[name] = shape
        if not per_block:
            raise ValueError(f"{folder}: no 'backbone.blocks.{{i}}.' keys among {len(shapes)} tensors")
        missing = sorted(set(range(max(per_block) + 1)) - set(per_block))
        if missing:
            raise ValueError(f"{folder}: blocks {missing} have no parameters (found blocks up to {max(per_block)})")
        declared = declared_layer_types(config, config_path)
        if declared is not None and len(declared) != len(per_block):
            raise ValueError(f"{config_path}: layer_types has {len(declared)} entries but the checkpoint has "
                             f"{len(per_block)} blocks")
        blocks = []
        for index in sorted(per_block):
            params = dict(sorted(per_block[index].items()))
            kind = block_type_of(index, params, None if declared is None else declared[index])
            dims = _mlstm_dims(index, params) if kind == "mlstm" else {}
            blocks.append(BlockSpec(index, kind, dims, params))
        expected = config.get("num_blocks", config.get("num_hidden_layers"))
        if expected is not None and expected != len(blocks):
            raise ValueError(f"{config_path}: num_blocks is {expected} but the checkpoint has {len(blocks)} blocks")
        width = config.get("embedding_dim", config.get("hidden_size"))
        for block in blocks:
            if width is not None and block.dims.get("embedding_dim", width) != width:
                raise ValueError(
                    f"{config_path}: embedding_dim is {width} but block {block.index} has width {block.dims['embedding_dim']}"
                )
        return cls(blocks, config=config, source=str(folder), model_params=model_params)

    @classmethod
    def from_config(cls, config) -> "BlockWiring":
        """From an `XLSTMConfig`, any object with its attributes, or a plain dict (keys as in config.json).
        Dimensions follow the official xLSTM-Large rules (`xlstm_viz.dims.mlstm_block_dims`, shared with the
        config and the loader); explicit qk_dim / v_dim / ffn_dim entries of a plain dict take precedence."""

        def get(name, default=None):
            value = config.get(name, default) if isinstance(config, dict) else getattr(config, name, default)
            return default if value is None else value

        width = get("embedding_dim", get("hidden_size"))
        num_blocks = get("num_blocks", get("num_hidden_layers"))
        num_heads = get("num_heads")
        for field_name, value in (("embedding_dim", width), ("num_blocks", num_blocks), ("num_heads", num_heads)):
            if value is None:
                raise ValueError(f"config has no {field_name}: cannot build a block wiring without it")
        width = checks.count("embedding_dim", width, minimum=1)
        num_blocks = checks.count("num_blocks", num_blocks, minimum=1)
        num_heads = checks.count("num_heads", num_heads, minimum=1)
        derived = mlstm_block_dims(width, num_heads, get("qk_dim_factor", 0.5), get("v_dim_factor", 1.0),
                                   get("ffn_proj_factor", 2.667), get("ffn_round_up_to_multiple_of", 64))
        dims = {
            "embedding_dim": width,
            "qk_dim": get("qk_dim") or derived.qk_dim,
            "v_dim": get("v_dim") or derived.v_dim,
            "num_heads": num_heads,
            "ffn_dim": get("ffn_dim") or derived.ffn_dim,
        }
        # a config.json dict may spell them layer_types (XLSTMConfig has already merged that into block_types)
        layer_types = config.get("layer_types") if isinstance(config, dict) else None
        types = list(get("block_types") or layer_types or ["mlstm"] * num_blocks)
        if len(types) != num_blocks:
            raise ValueError(f"config has {len(types)} block_types for num_blocks={num_blocks}")
        blocks = [BlockSpec(i, t, dict(dims) if t == "mlstm" else {}) for i, t in enumerate(types)]
        plain = config if isinstance(config, dict) else (config.to_dict() if hasattr(config, "to_dict") else {})
        return cls(blocks, config=dict(plain))

    # -- reading ---------------------------------------------------------------------------------
    def roles(self) -> dict[str, str]:
        """embedding is sensory, blocks are inter, out_norm and lm_head are motor."""
        return {n: "sensory" if n == "embedding" else "motor" if n in ("out_norm", "lm_head") else "inter" for n in self.nodes}

    @property
    def edges(self) -> list[Edge]:
        """All edges, ordered by (source position, destination position) in `nodes`."""
        return sorted(self._edges.values(), key=lambda e: (self._position[e.src], self._position[e.dst]))

    def edge(self, src: str, dst: str) -> Edge:
        try:
            return self._edges[(src, dst)]
        except KeyError:
            names = [f"{e.src}->{e.dst}" for e in self.edges]
            near = difflib.get_close_matches(f"{src}->{dst}", names, n=5)
            raise KeyError(f"no edge {src}->{dst}; close: {near or names[:5]}") from None

    def incoming(self, node: str) -> list[Edge]:
        self._require_node(node)
        return [e for e in self.edges if e.dst == node]

    def outgoing(self, node: str) -> list[Edge]:
        self._require_node(node)
        return [e for e in self.edges if e.src == node]

    def synapses(self) -> dict[tuple[str, str], int]:
        """{(src, dst): polarity} of the enabled edges (what `diff` compares)."""
        return {(e.src, e.dst): e.polarity for e in self.edges if e.enabled}

    def graph(self) -> nx.DiGraph:
        """networkx view: node attributes role / block_type, edge attributes polarity / enabled / kind."""
        graph = nx.DiGraph()
        types = {b.name: b.block_type for b in self.blocks}
        for node, role in self.roles().items():
            graph.add_node(node, role=role, block_type=types.get(node))
        for e in self.edges:
            graph.add_edge(e.src, e.dst, **e.state())
        return graph

    def order(self) -> list[str]:
        """Execution order: topological, ties broken by position in `nodes`."""
        return list(nx.lexicographical_topological_sort(self.graph(), key=self._position.__getitem__))

    def stages(self) -> list[list[str]]:
        """Topological generations (disabled edges included, so toggling an edge never reorders)."""
        return [sorted(g, key=self._position.__getitem__) for g in nx.topological_generations(self.graph())]

    # -- editing ---------------------------------------------------------------------------------
    def add_skip(self, src: str, dst: str, polarity: int = 1) -> None:
        self._require_node(src)
        self._require_node(dst)
        polarity = checks.polarity("polarity", polarity, allow_zero=False)
        if (src, dst) in self._edges:
            raise ValueError(f"edge {src}->{dst} already exists ({self._edges[(src, dst)].kind})")
        graph = self.graph()
        graph.add_edge(src, dst)
        try:
            cycle = nx.find_cycle(graph, source=dst)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            path = " -> ".join([cycle[0][0]] + [v for _, v in cycle])
            raise ValueError(f"skip {src}->{dst} would create the cycle {path}")
        self._commit("add_skip", [Change(("edge", src, dst), None, Edge(src, dst, polarity, True, "skip").state())])

    def remove_edge(self, src: str, dst: str) -> None:
        edge = self.edge(src, dst)
        if edge.kind == "residual":
            raise ValueError(f"residual edge {src}->{dst} cannot be removed (the stream always flows); disable it instead")
        self._commit("remove_edge", [Change(("edge", src, dst), edge.state(), None)])

    def set_enabled(self, src: str, dst: str, enabled: bool) -> None:
        edge = self.edge(src, dst)
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be a bool, got {enabled!r}")
        self._commit("set_enabled", [Change(("edge", src, dst), edge.state(), {**edge.state(), "enabled": enabled})])

    def set_polarity(self, src: str, dst: str, polarity: int) -> None:
        edge = self.edge(src, dst)
        polarity = checks.polarity("polarity", polarity, allow_zero=False)
        self._commit("set_polarity", [Change(("edge", src, dst), edge.state(), {**edge.state(), "polarity": polarity})])

    def _apply_change(self, target, value) -> None:
        _, src, dst = target
        if value is None:
            del self._edges[(src, dst)]
        else:
            self._edges[(src, dst)] = Edge(src, dst, **value)

    def _require_node(self, node: str) -> None:
        if node not in self._position:
            near = difflib.get_close_matches(str(node), self.nodes, n=3)
            raise KeyError(f"no node {node!r}; close: {near or list(self.nodes[:3])}")

    # -- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "source": self.source,
            "config": self.config,
            "model_params": {k: list(v) for k, v in self.model_params.items()},
            "blocks": [
                {**asdict(b), "params": {k: list(v) for k, v in b.params.items()}} for b in self.blocks
            ],
            "edges": [asdict(e) for e in self.edges],
            "edits": self._edits_to_json(),
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict) -> "BlockWiring":
        """Rebuild from `to_dict()`, validated first (`documents`): types, edges between known nodes that point
        forward, the residual chain intact, an edit history consistent with the edges; errors name the field."""
        what = "BlockWiring document"
        doc = documents.parse(documents.BlockDoc, data, what, _FORMAT)
        blocks = [BlockSpec(b.index, b.block_type, dict(b.dims), {k: tuple(v) for k, v in b.params.items()})
                  for b in doc.blocks]
        wiring = cls(blocks, doc.config, doc.source, {k: tuple(v) for k, v in doc.model_params.items()})
        residual = set(zip(wiring.nodes, wiring.nodes[1:]))
        wiring._edges = {}
        for i, e in enumerate(doc.edges):
            where = f"{what}: edges[{i}] {e.src}->{e.dst}"
            wiring._check_edge_value((e.src, e.dst), e.model_dump(exclude={"src", "dst"}), where)
            if (e.src, e.dst) in wiring._edges:
                raise ValueError(f"{where}: the edge is listed twice")
            wiring._edges[(e.src, e.dst)] = Edge(**e.model_dump())
        missing = sorted(residual - set(wiring._edges), key=lambda k: wiring._position[k[0]])
        if missing:
            raise ValueError(f"{what}: residual edge {missing[0][0]}->{missing[0][1]} is missing (residual edges "
                             "cannot be removed, only disabled)")
        documents.check_history(doc.edits, what, wiring._read_target, wiring._check_edge_value)
        wiring._edits_from_json(data["edits"])
        return wiring

    def _read_target(self, target: tuple):
        if len(target) != 3 or target[0] != "edge":
            raise ValueError("a block wiring target is ['edge', src, dst]")
        _, src, dst = target
        for node in (src, dst):
            if node not in self._position:
                raise ValueError(f"no node {node!r}; nodes: {list(self.nodes)}")
        edge = self._edges.get((src, dst))
        return None if edge is None else edge.state()

    def _check_edge_value(self, target, value, where) -> None:
        """`value` (an edge state, or None for absent) is valid for the edge `target` = (.., src, dst)."""
        src, dst = target[-2:]
        for node in (src, dst):
            if node not in self._position:
                raise ValueError(f"{where}: no node {node!r}; nodes: {list(self.nodes)}")
        if value is None:
            if (src, dst) in zip(self.nodes, self.nodes[1:]):
                raise ValueError(f"{where}: the residual edge {src}->{dst} cannot be absent")
            return
        if not isinstance(value, dict) or set(value) != {"polarity", "enabled", "kind"}:
            raise ValueError(f"{where}: an edge state is {{'polarity', 'enabled', 'kind'}}, got {value!r}")
        if type(value["polarity"]) is not int or value["polarity"] not in (-1, 1):
            raise ValueError(f"{where}: polarity must be -1 or +1, got {value['polarity']!r}")
        if not isinstance(value["enabled"], bool):
            raise ValueError(f"{where}: enabled must be true or false, got {value['enabled']!r}")
        kind = value["kind"]
        if kind not in EDGE_KINDS:
            raise ValueError(f"{where}: unknown kind {kind!r}, expected one of {EDGE_KINDS}")
        consecutive = self._position[dst] == self._position[src] + 1
        if kind == "residual" and not consecutive:
            raise ValueError(f"{where}: a residual edge joins consecutive nodes, {src}->{dst} does not")
        if kind == "skip" and self._position[dst] <= self._position[src]:
            raise ValueError(f"{where}: the skip {src}->{dst} points back (the stream flows "
                             f"{' -> '.join(self.nodes)}), so it would form a cycle")
        if kind == "skip" and consecutive:
            raise ValueError(f"{where}: {src}->{dst} is the residual edge, not a skip")

    def _check_change_value(self, target, value, where) -> None:  # Editable.apply_edit
        self._read_target(target)
        self._check_edge_value(target, value, where)

    @classmethod
    def from_json(cls, text: str) -> "BlockWiring":
        return cls.from_dict(json.loads(text))

    def save(self, path) -> None:
        Path(path).write_text(self.to_json(indent=1))

    @classmethod
    def load(cls, path) -> "BlockWiring":
        return cls.from_json(Path(path).read_text())

    def __repr__(self) -> str:
        kinds = sorted({b.block_type for b in self.blocks})
        skips = sum(e.kind == "skip" for e in self._edges.values())
        return f"BlockWiring({len(self.blocks)} blocks {kinds}, {skips} skips, version={self.version})"
