"""Traces: what every probe saw during one forward pass, as numpy, saved to .npz without pickle.

`model.run_with_trace(ids, probes=None, mode="stats"|"full", run_mode="chunkwise"|"recurrent")` records, per token and
per head, the statistics of `xlstm_viz.execution.probes` (computed by `xlstm_viz.execution.stats`); "full" also keeps
the whole tensors of the chosen probes.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from xlstm_viz.execution import stats_gpu
from xlstm_viz.execution.probes import local_name, probe_names, select_probes
from xlstm_viz.model.forward import Executor
from xlstm_viz.model.mlstm_cell import MemoryTrace
from xlstm_viz.model.xlstm import XLSTM
from xlstm_viz.wiring.block_types import BLOCK_TYPES, find_row
from xlstm_viz.execution.stats import kernel_stats, numpy_stats, stats_table, table_slices

TRACE_MODES = ("stats", "full")
STATS_BACKENDS = (None, "kernel", "numpy", "mlx", "fused")


def to_host(a) -> np.ndarray:
    """An MLX array as numpy (bf16 widened to float32, which numpy lacks); numpy arrays pass as they are."""
    if isinstance(a, mx.array):
        return np.array(a.astype(mx.float32) if a.dtype == mx.bfloat16 else a)
    return a


class _HostOnRead:
    """A dataclass field that also takes an MLX array, brought to the host (numpy) at its first read: a trace's
    logits are its largest part (412 MB of float32 at 7B and 2,048 tokens, five times all its stats), and copying
    them at once made a GPU stats trace pay for a transfer that many uses of it never read."""

    def __set_name__(self, owner, name):
        self._slot = "_" + name

    def __get__(self, obj, owner=None):
        if obj is None:
            raise AttributeError(self._slot[1:])  # the dataclass reads this as "no default"
        value = getattr(obj, self._slot)
        if isinstance(value, mx.array):
            value = to_host(value)
            setattr(obj, self._slot, value)
        return value

    def __set__(self, obj, value):
        setattr(obj, self._slot, value)


@dataclass
class Trace:
    tokens: np.ndarray  # [B, S]
    logits: np.ndarray = _HostOnRead()  # [B, S, V]; given as an MLX array, read to the host at first use
    probes: list[str]
    stats: dict[str, dict[str, np.ndarray]]  # probe -> stat -> [B, S, H]
    full: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    # -- numpy / files --
    def to_numpy(self) -> dict[str, np.ndarray]:
        """Flat dict: tokens, logits, stats/<probe>/<stat>, full/<probe>."""
        flat = {"tokens": self.tokens, "logits": self.logits}
        for probe, stats in self.stats.items():
            for stat, value in stats.items():
                flat[f"stats/{probe}/{stat}"] = value
        for probe, value in self.full.items():
            flat[f"full/{probe}"] = value
        return flat

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        meta = dict(self.meta, probes=self.probes)
        np.savez_compressed(path, __meta__=np.array(json.dumps(meta)), **self.to_numpy())
        return path if path.suffix == ".npz" else path.with_suffix(path.suffix + ".npz")

    @classmethod
    def load(cls, path: str | Path) -> "Trace":
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"{path} is not a trace .npz file: {err}") from None
        with data:
            if "__meta__" not in data.files:
                raise ValueError(f"{path} has no __meta__ entry: not written by Trace.save")
            meta = json.loads(str(data["__meta__"]))
            stats: dict[str, dict[str, np.ndarray]] = {}
            full = {}
            for key in data.files:
                if key.startswith("stats/"):
                    probe, stat = key[len("stats/"):].rsplit("/", 1)
                    stats.setdefault(probe, {})[stat] = data[key]
                elif key.startswith("full/"):
                    full[key[len("full/"):]] = data[key]
            probes = meta.pop("probes")
            return cls(data["tokens"], data["logits"], probes, stats, full, meta)

    # -- analysis --
    def diff(self, other: "Trace") -> "Trace":
        """other - self for every stat, full tensor and the logits both traces share ("what the change did")."""
        if self.tokens.shape != other.tokens.shape or not np.array_equal(self.tokens, other.tokens):
            raise ValueError(
                f"cannot diff traces of different inputs: tokens {self.tokens.shape} vs {other.tokens.shape}"
            )
        stats = {
            p: {s: other.stats[p][s] - v for s, v in st.items() if s in other.stats.get(p, {})}
            for p, st in self.stats.items() if p in other.stats
        }
        full = {p: other.full[p] - v for p, v in self.full.items() if p in other.full}
        probes = [p for p in self.probes if p in stats]
        meta = {"diff_of": [self.meta, other.meta]}
        if self.meta.get("layer_types") == other.meta.get("layer_types") is not None:
            meta["layer_types"] = self.meta["layer_types"]
        return Trace(self.tokens, other.logits - self.logits, probes, stats, full, meta)

    def summary(self, stat: str = "absmax") -> dict[str, float]:
        """One number per probe: the max over batch, tokens and heads of `stat` (absolute, for diffs)."""
        known = sorted({name for st in self.stats.values() for name in st})
        if self.stats and stat not in known:  # a typo gave an empty dict, as if nothing had changed
            raise KeyError(f"no probe of this trace has the statistic {stat!r}; its statistics are {known}")
        return {p: float(np.max(np.abs(s[stat]))) for p, s in self.stats.items() if stat in s}

    def top_k(self, k: int = 5, batch: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Top-k next-token ids and probabilities per position: ([S, k] ids, [S, k] probs)."""
        B, _, V = self.logits.shape
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= V:  # k=-1 sliced [:, :-1]
            raise ValueError(f"top_k k must be an integer in [1, {V}] (the vocabulary), got {k!r}")
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or not 0 <= batch < B:
            raise ValueError(f"top_k batch {batch!r} is outside the trace's batch: rows are 0..{B - 1}")
        logits = self.logits[batch].astype(np.float64)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        ids = np.argsort(-probs, axis=-1)[:, :k]
        return ids, np.take_along_axis(probs, ids, -1)

    def __repr__(self) -> str:
        return (f"Trace(tokens={tuple(self.tokens.shape)}, probes={len(self.probes)}, "
                f"full={sorted(self.full)[:4]}{'...' if len(self.full) > 4 else ''}, meta={self.meta})")


class Recorder:
    """Executor observer: keeps the (lazy) outputs of the chosen probes and turns them into stats at the end.

    Reductions: on CUDA one fused launch reads and reduces every probe where it lies (`stats_gpu`); on other GPUs
    one compiled MLX table does (`stats.stats_table`, the GPU reference); either way the stats leave the device in
    one copy. On the CPU device a numba kernel reduces MLX's buffers in place (`stats.kernel_stats`);
    `stats_on="numpy"` selects the numpy reference (`stats.numpy_stats`). Memory norms (‖C_t‖_F, ‖n_t‖, m_t) are the
    memory cell's own MemoryTrace on every device and backend (recurrent mode: read off each step's state;
    chunkwise: reconstructed from the chunk-boundary states inside the cell's compiled graph); they ride in the
    table as raw columns. sigmoid(f) and exp(i - m) are computed on the host from the gate values.
    """

    stepping = False
    host_logits = _HostOnRead()  # set by finish(logits): numpy at its first read

    def __init__(self, model, probes, mode: str, stats_on: str | None = None):
        # stats_on: "kernel" (numba, CPU device), "numpy" (reference), "mlx" (compiled MLX table, any device) or
        # "fused" (one CUDA launch); None picks by device: kernel on the CPU, fused on CUDA, mlx elsewhere (Metal).
        if stats_on not in STATS_BACKENDS:
            raise ValueError(f"stats_on must be one of {STATS_BACKENDS}, got {stats_on!r}")
        if mode not in TRACE_MODES:
            raise ValueError(f"trace mode must be one of {TRACE_MODES}, got {mode!r}")
        if stats_on == "fused" and not stats_gpu.available():
            raise ValueError(f"stats_on='fused' needs MLX's CUDA backend; the default device is {mx.default_device()}")
        if stats_on is None:
            stats_on = "kernel" if mx.default_device() == mx.cpu else "fused" if stats_gpu.available() else "mlx"
        self.stats_on = stats_on
        self.host_logits = None
        self.names = select_probes(model, probes)
        self.selected = set(self.names)
        self.full_mode = mode == "full"
        self.num_heads = model.config.num_heads
        # each block's own head count (an sLSTM block's slstm_num_heads; None: a block type without heads)
        self._block_heads = [model.block_heads(j) for j in range(len(model.cell_wirings))]
        self._local = {n: local_name(n) for n in probe_names(model)}  # on_cell runs per cell: no string splits
        self._outputs: dict[str, list[mx.array]] = {}
        self._memory_blocks = {
            int(n.split(".")[1]) for n in self.names if self._local.get(n) in ("mlstm.memory", "mlstm.igate")
        }
        # block -> MemoryTrace field -> per span C_norm, n_norm or m [B, S, NH]
        self._memory: dict[int, dict[str, list]] = {}
        self._fgates = [n for n in self.names if self._local.get(n) == "mlstm.fgate"]

    def wants_memory_trace(self, block: int):
        """The MemoryTrace fields the chosen probes need from this block's memory cell: all three for the memory,
        m alone for the input gate's exp(i - m); False for none."""
        if block not in self._memory_blocks:
            return False
        return MemoryTrace.FIELDS if f"blocks.{block}.mlstm.memory" in self.selected else ("m",)

    def on_cell(self, event) -> None:
        name = event.name
        if event.cell_type == "mlstm_memory" and event.block in self._memory_blocks:
            self._record_memory(event)
        if name in self.selected:
            self._outputs.setdefault(name, []).append(event.output)

    def _record_memory(self, event) -> None:
        trace = event.memory_trace
        if trace is None:
            raise ValueError(f"memory cell {event.name} ran without the MemoryTrace the trace asked for "
                             f"({self.wants_memory_trace(event.block)}): its cell function must return one when p.trace")
        record = self._memory.setdefault(event.block, {})
        for key in MemoryTrace.FIELDS:
            value = getattr(trace, key)
            if value is not None:  # not asked for
                record.setdefault(key, []).append(value.transpose(0, 2, 1))

    def finish(self, logits: mx.array | None = None) -> tuple[dict, dict]:
        """(stats, full tensors) as numpy. Given the forward's logits, also sets `self.host_logits`: evaluated with the
        stats, brought to the host when first read."""
        cat = lambda parts: mx.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        outputs = {p: cat(v) for p, v in self._outputs.items()}
        arrays, layout, names = [], [], []  # names: (probe, stat, input index) per recorded quantity

        def add(array, features, heads, kind) -> int:
            arrays.append(array)
            layout.append((features, heads, kind))
            return len(arrays) - 1

        index: dict[tuple, int] = {}  # (id(array), heads) -> input: a tensor that two probes see is reduced once
        for probe in self.names:
            if probe not in outputs:
                continue
            out = outputs[probe]
            width = out.shape[-1]
            local = self._local[probe]  # select_probes only returns known names
            rule = _head_rule(local)  # as probes.probe_heads
            if rule == "features":
                heads = width
            elif rule == "heads":
                count = self._heads_of(probe, local)
                heads = count if width % count == 0 else 1
            else:
                heads = 1
            key = (id(out), heads)
            if key not in index:  # e.g. blocks.1.in is blocks.0.out in the default wiring
                index[key] = add(out, width, heads, 1)
            names.append((probe, None, index[key]))
            if rule == "features":
                names.append((probe, "value", add(out, width, heads, 0)))
        # the memory cells' norms ride in the table as raw columns
        in_table = {j: {k: add(cat(v), v[0].shape[-1], 1, 0) for k, v in record.items()}
                    for j, record in self._memory.items()}
        full = {p: outputs[p] for p in outputs} if self.full_mode else {}
        # The logits are evaluated with the stats (one pass over the graph) but stay on the device until read.
        self.host_logits = logits
        extra = [] if logits is None else [logits]
        if not arrays:
            mx.eval(extra)
            return {}, {}
        layout = tuple(layout)
        if self.stats_on == "fused":
            packed, plan = stats_gpu.pack(arrays, layout)
            mx.eval(packed, full, extra)
            columns = stats_gpu.unpack(np.array(packed, copy=False), plan)  # a view of the one host copy
        elif self.stats_on == "mlx":
            table = stats_table(layout)(*arrays)
            mx.eval(table, full, extra)
            table = np.array(table)
            columns = [{stat: table[..., sl] for stat, sl in c} for c in table_slices(layout)]
        else:
            arrays = [a if a.dtype == mx.float32 else a.astype(mx.float32) for a in arrays]
            mx.eval(arrays, full, extra)
            host = [np.array(a, copy=False) for a in arrays]  # views of MLX's buffers, no copy
            columns = (kernel_stats if self.stats_on == "kernel" else numpy_stats)(host, layout)
        stats: dict[str, dict[str, np.ndarray]] = {}
        for probe, extra, i in names:  # a probe's own stats come first, then its extras
            if extra is None:
                stats[probe] = dict(columns[i])
            else:
                stats[probe][extra] = columns[i]["raw"]
        norms = {j: {k: columns[i]["raw"] for k, i in inputs.items()} for j, inputs in in_table.items()}
        self._gate_and_memory_stats(stats, norms)
        return stats, {p: to_host(v) for p, v in full.items()}

    def _heads_of(self, probe: str, local: str) -> int:
        """The head count a per-head probe's features split into: its block's (the model's outside the blocks)."""
        if local == probe:
            return self.num_heads
        return self._block_heads[int(probe[7:probe.index(".", 7)])] or 1

    def _gate_and_memory_stats(self, stats: dict, norms: dict) -> None:
        """sigmoid(f), the memory norms and exp(i - m): host arithmetic on [B, S, NH] arrays."""
        for probe in self._fgates:
            if probe in stats:
                stats[probe]["sigmoid"] = 1.0 / (1.0 + np.exp(-stats[probe]["value"]))  # float32 in, float32 out
        for j, values in norms.items():
            memory, igate = f"blocks.{j}.mlstm.memory", f"blocks.{j}.mlstm.igate"
            if memory in stats:
                stats[memory].update(values)
            if igate in stats:
                stats[igate]["exp"] = np.exp(stats[igate]["value"] - values["m"])


_HEAD_RULES: dict[tuple[str, int], str] = {}


def _head_rule(local: str) -> str:
    """The head rule of a block-local cell name ("none" for names no table has), cached: looked up through the
    registered tables for every probe of every trace it cost ~0.3 ms a trace on the demo (120 probes). Keyed by the
    registry's size, so a block type registered later is seen."""
    key = (local, len(BLOCK_TYPES))
    rule = _HEAD_RULES.get(key)
    if rule is None:
        row = find_row(local)
        rule = _HEAD_RULES[key] = "none" if row is None else row.head_rule()
    return rule


def compiled_by_default() -> bool:
    """Whether run_with_trace compiles a chunkwise trace when not told: on a GPU, not on the CPU device."""
    return mx.default_device() != mx.cpu


def run_with_trace(model, input_ids, probes=None, mode: str = "stats", run_mode: str = "chunkwise", state=None,
                   compiled: bool | None = None) -> Trace:
    """compiled: run the observed forward as one mx.compile graph whose outputs are the probes (and the memory
    cells' norms), instead of cell by cell. The numbers are the eager ones up to float rounding; the graph is
    re-traced when the model's graph signature, the probe selection, the input's shape or the state's presence
    changes. None: compiled on a GPU for chunkwise runs (on a 7B model the eager observed forward alone costs
    more than a trace may, issue 16), eager on the CPU (a dashboard edit changes the wiring, and each change would
    trace and compile the graph again). Recurrent runs are always eager (one graph per token count)."""
    if compiled not in (None, True, False):
        raise ValueError(f"compiled must be None, True or False, got {compiled!r}")
    if compiled is None:
        compiled = run_mode == "chunkwise" and compiled_by_default()
    if compiled and run_mode != "chunkwise":
        raise ValueError(f"compiled traces run the chunkwise form only (run_mode {run_mode!r}): pass compiled=False")
    recorder = Recorder(model, probes, mode)
    if compiled:
        logits = _forward_compiled(model, recorder, input_ids, state)
    else:
        logits, _ = Executor(model).forward_observed(input_ids, state=state, mode=run_mode, observer=recorder)
    stats, full = recorder.finish(logits)
    meta = {
        "mode": mode,
        "run_mode": run_mode,
        "source": model.source,
        "layer_types": list(model.config.layer_types()),  # what the views draw each block's panels by
        "wiring_versions": [str(w.version) for w in model.cell_wirings] + [str(model.block_wiring.version)],
        "interventions": [i.describe() for i in model.interventions.list()],
    }
    probes_recorded = [p for p in recorder.names if p in stats]
    # the logits still on the device (recorder._host_logits): the Trace reads them to the host at first use
    return Trace(np.array(input_ids), recorder._host_logits, probes_recorded, stats, full, meta)


# id(model) -> {key: (compiled function, its output slots)}: a few graphs per model (each holds its traced program),
# dropped with the model (an nn.Module is a dict: not hashable, so no WeakKeyDictionary)
_COMPILED: dict[int, dict] = {}
MAX_COMPILED_TRACES = 4


def _forward_compiled(model, recorder: "Recorder", input_ids, state):
    """The observed chunkwise forward under mx.compile; fills `recorder` as the eager forward would. Returns logits.

    At trace time a recorder of the same selection sees every cell's (traced) output; the graph returns what it
    kept, each array once (a tensor two probes see, blocks.1.in = blocks.0.out, stays one object, which `finish`
    reduces once), and the slots say where each goes in the caller's recorder."""
    from xlstm_viz.model import gemv_kernels, mlstm_kernels
    from xlstm_viz.model.forward import kept_inputs, state_arrays, state_like

    executor = Executor(model)
    input_ids = executor.check_ids(input_ids, state)  # they read values: not inside the graph
    B = input_ids.shape[0]
    if state is None:
        flat_in = []
    else:
        state = executor.check_state(state, B)
        flat_in = [a for s in state for a in state_arrays(s)]
    names, mode, stats_on = list(recorder.names), "full" if recorder.full_mode else "stats", recorder.stats_on
    key = (model.graph_signature(), tuple(names), mode, tuple(input_ids.shape),
           tuple((a.shape, a.dtype) for a in flat_in))
    graphs = _COMPILED.get(id(model))
    if graphs is None:
        graphs = _COMPILED[id(model)] = {}
        weakref.finalize(model, _COMPILED.pop, id(model), None)
    entry = graphs.get(key)
    fresh = entry is None  # the first call traces (the key holds every input shape and dtype)
    if entry is None:
        mlstm_kernels.warm_up()  # the kernels' self-checks read values: not while mx.compile traces
        gemv_kernels.warm_up()
        slots: list = []
        template = None if state is None else [block.new_state(B) for block in model.blocks]  # structure only

        def raw(ids, flat):
            # the selection's values, not the caller's recorder: the cached graph would keep that recorder, and
            # with it the first trace's probes (12 GB at 7B), alive as long as the graph
            rec = Recorder(model, names, mode, stats_on=stats_on)
            pending = list(flat)  # state_like consumes it from the front, block by block
            start = None if template is None else [state_like(t, pending) for t in template]
            logits, _ = Executor(model).forward_observed(ids, state=start, mode="chunkwise", observer=rec,
                                                         check=False)
            outputs, where, slots[:] = [], {}, []
            kept = [("out", name, a) for name, parts in rec._outputs.items() for a in parts]
            kept += [("memory", (j, field), a) for j, record in rec._memory.items()
                     for field, parts in record.items() for a in parts]
            for kind, name, a in kept:
                if id(a) not in where:
                    where[id(a)] = len(outputs)
                    outputs.append(a)
                slots.append((kind, name, where[id(a)]))
            return logits, outputs

        if len(graphs) >= MAX_COMPILED_TRACES:
            graphs.pop(next(iter(graphs)))
        entry = graphs[key] = (mx.compile(raw, inputs=model.state), slots)
    fn, slots = entry
    try:
        with kept_inputs(model, active=fresh):
            logits, outputs = fn(input_ids, flat_in)
    except BaseException:
        graphs.pop(key, None)  # its slots were never filled
        raise
    for kind, name, i in slots:
        if kind == "out":
            recorder._outputs.setdefault(name, []).append(outputs[i])
        else:
            j, field = name
            recorder._memory.setdefault(j, {}).setdefault(field, []).append(outputs[i])
    return logits


XLSTM.run_with_trace = run_with_trace  # model.run_with_trace(ids, ...): the model does not import execution
