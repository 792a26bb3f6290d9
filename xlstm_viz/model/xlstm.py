"""The xLSTM-7B ("xLSTM Large") language model: embeddings, a stack of blocks, out_norm, lm_head with logit soft cap.

The forward pass runs the model's wirings (`xlstm_viz.model.forward`): with the default wirings it is exactly the
NX-AI computation; edits to `model.block_wiring` or `model.cell_wirings` take effect on the next call. Each block is
built from its layer type's entry in the block registry (`xlstm_viz.wiring.block_types.BLOCK_TYPES`): the table
gives the cell wiring (and so the probe names), the attached module holds the parameters.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from xlstm_viz import blas
from xlstm_viz.config import ConfigError, XLSTMConfig
from xlstm_viz.dims import model_parameters
# Block modules attach their cell functions and nn.Module to the registries when imported.
from xlstm_viz.model import mlstm_block, ncp_mlstm_block, ncp_slstm_block, neuron_block, orig_mlstm_block, slstm_block  # noqa: F401
from xlstm_viz.model import activations, gemv_kernels, mlstm_kernels
from xlstm_viz.model.forward import MODES, Executor, _check_ids, _check_lazy_ids, kept_inputs, state_arrays, state_like
from xlstm_viz.model.initialization import initialize
from xlstm_viz.model.interventions import Interventions
from xlstm_viz.model.norms import RMSNorm
from xlstm_viz.wiring import BlockWiring, CellWiring
from xlstm_viz.wiring.block_types import block_table, cell_type


def block_module(kind: str) -> type:
    """The nn.Module class of a registered block type; an unknown or module-less type is an error naming it."""
    table = block_table(kind)
    if table.module is None:
        raise ValueError(f"block type {kind!r} has a table but no module attached (xlstm_viz.wiring.block_types."
                         f"attach_block), so a model cannot be built with it")
    return table.module


def block_wiring(kind: str, index: int, config) -> CellWiring:
    """The default cell wiring of block `index`, from its block type's table."""
    table = block_table(kind)
    return CellWiring.from_table(table, index, table.dims_of(config))


def _own_neuron_wiring(block: nn.Module) -> nn.Module:
    """`block` with module objects of its own (its parameter arrays shared) around a copy of its neuron wiring."""
    memo: dict[int, object] = {id(block.wiring): copy.deepcopy(block.wiring)}

    def clone(obj):
        if id(obj) in memo:
            return memo[id(obj)]
        if isinstance(obj, nn.Module):
            new = copy.copy(obj)  # a new dict of the same entries, and a new __dict__ of the same attributes
            memo[id(obj)] = new
            for key, value in list(new.items()):
                dict.__setitem__(new, key, clone(value))
            for key, value in list(vars(new).items()):
                if isinstance(value, nn.Module) or id(value) in memo:
                    object.__setattr__(new, key, clone(value))
            return new
        if isinstance(obj, (list, tuple)):
            return type(obj)(clone(v) for v in obj)
        if isinstance(obj, dict):
            return {k: clone(v) for k, v in obj.items()}
        return obj  # arrays and everything else: shared

    return clone(block)


class Backbone(nn.Module):
    def __init__(self, config: XLSTMConfig):
        super().__init__()
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.blocks = [block_module(kind)(config) for kind in config.layer_types()]
        if config.add_out_norm:
            self.out_norm = RMSNorm(config.embedding_dim, config.norm_eps, config.use_bias)
            if config.out_norm_type == "layernorm_offset":
                self.out_norm.weight = mx.zeros((config.embedding_dim,))  # an offset from 1: zeros = identity scale


# weight_mode="fused" (xlstm 2.0.6 `convert_single_weights_to_fused_weights`): fused name -> the single-mode
# parameters it concatenates along the output axis, in this order, for every ".weight" / ".bias" present.
FUSED_PARAMETERS = {
    "mlstm_layer.qkv_opreact": ("mlstm_layer.q", "mlstm_layer.k", "mlstm_layer.v", "mlstm_layer.ogate_preact"),
    "mlstm_layer.ifgate_preact": ("mlstm_layer.igate_preact", "mlstm_layer.fgate_preact"),
    "ffn.proj_up_gate_z": ("ffn.proj_up_gate", "ffn.proj_up"),
}


def fuse_weights(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """Single-mode tensors in the fused layout: what a `weight_mode: "fused"` config.json promises the official
    xLSTMLarge. Each block's parts are concatenated in FUSED_PARAMETERS order; everything else passes through."""
    out = dict(weights)
    blocks = sorted({name.split(".")[2] for name in weights if name.startswith("backbone.blocks.")}, key=int)
    for b in blocks:
        prefix = f"backbone.blocks.{b}."
        for fused, parts in FUSED_PARAMETERS.items():
            for leaf in ("weight", "bias"):
                names = [f"{prefix}{part}.{leaf}" for part in parts]
                present = [n for n in names if n in out]
                if not present:
                    continue
                if len(present) != len(names):
                    raise ValueError(f"cannot fuse {prefix}{fused}.{leaf}: missing {sorted(set(names) - set(present))}")
                out[f"{prefix}{fused}.{leaf}"] = mx.concatenate([out.pop(n) for n in names], axis=0)
    return out


def machine_memory_bytes() -> int | None:
    """Memory the default device can hold: the GPU's (Metal, CUDA) where MLX reports it, else physical RAM."""
    try:
        size = mx.device_info().get("memory_size")
    except Exception:  # noqa: BLE001 - older MLX without device_info
        size = None
    if size:
        return int(size)
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(config: XLSTMConfig) -> None:
    """Refuse a config whose parameters cannot fit in the machine's memory in any dtype the loader supports, before
    any module is built (a million-block config otherwise spends many seconds making modules and then aborts the
    process). The bound is bfloat16 (2 bytes a parameter): MLX makes the initial weights lazily, so a bf16 checkpoint
    of a model that fits only in bf16 still loads."""
    if any(kind != "mlstm" for kind in config.layer_types()):
        return  # the count below is the mLSTM block's; other block types bring their own modules
    count = model_parameters(config.dims, config.num_blocks, config.vocab_size, config.use_bias,
                             config.add_out_norm, config.tie_word_embeddings)
    need, have = 2 * count, machine_memory_bytes()
    if have is not None and need > have:
        raise ConfigError(
            f"the config describes {count:,} parameters ({need / 2**30:,.1f} GiB even in bfloat16) but this machine "
            f"has {have / 2**30:,.1f} GiB of memory (embedding_dim={config.embedding_dim}, "
            f"num_blocks={config.num_blocks}, vocab_size={config.vocab_size}, ffn_dim={config.ffn_dim})"
        )


# compute_dtype of XLSTM / load_model: the dtype of activations and matmuls. States, gate arithmetic (the memory
# cell) and norm reductions are float32 whatever it is, as in the official xLSTMLarge with autocast.
COMPUTE_DTYPES = ("float32", "bfloat16", "auto")


def resolve_compute_dtype(compute_dtype: str, weight_dtype) -> mx.Dtype:
    """"float32" (the exact path, what parity tests use), "bfloat16", or "auto": the embedding weights' dtype (bf16
    weights -> bf16 activations, the official autocast; float32 or float16 weights -> float32)."""
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}")
    if compute_dtype == "auto":
        return mx.bfloat16 if weight_dtype is not None and weight_dtype == mx.bfloat16 else mx.float32
    return getattr(mx, compute_dtype)


class _Wirings:
    """Holds the wirings outside MLX's parameter tree (nn.Module treats list/dict attributes as parameters)."""

    def __init__(self, block, cells):
        self.block = block
        self.cells = cells


class XLSTM(nn.Module):
    def __init__(self, config: XLSTMConfig, init_profile: str | None = None, seed: int | None = None,
                 compute_dtype: str = "float32"):
        """seed: the initial weights' seed. With `init_profile`, the profile's initialisers' (None: 0); without, it
        seeds MLX's global generator before the modules draw their default initial weights, as `train` does (None:
        the generator is left as it is). Once seed= did nothing without a profile: two seeds, the same weights."""
        super().__init__()
        resolve_compute_dtype(compute_dtype, None)  # a bad name fails here, before any module is built
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64):
            raise ValueError(f"seed must be None or an integer in [0, 2**64), got {seed!r}")
        config.validate()  # a config edited after it was made is checked again before any module is built
        check_fits_in_memory(config)
        # Process-wide glibc settings for MLX's large buffers: applied by the first model, not by `import xlstm_viz`
        # (a library import must not change the host's malloc), once per process; XLSTM_VIZ_MALLOC=off opts out.
        blas.tune_malloc()
        if seed is not None and init_profile is None:
            mx.random.seed(seed)
        self.config = config
        self.backbone = Backbone(config)
        if not config.tie_word_embeddings:  # tied: the embedding matrix is the head (head_weight)
            self.lm_head = nn.Linear(config.embedding_dim, config.vocab_size, bias=False)
        self._wirings = _Wirings(
            BlockWiring.from_config(config),
            [block_wiring(kind, j, config) for j, kind in enumerate(config.layer_types())],
        )
        self.interventions = Interventions(self.probe_names, heads_of=self.cell_heads)
        self.compute_dtype = compute_dtype  # see COMPUTE_DTYPES; read on every forward (activation_dtype)
        self.source: str | None = None  # checkpoint folder this model was loaded from
        self.tokenizer = None
        self.task = None
        if init_profile is not None:
            self.init_from_profile(init_profile, 0 if seed is None else seed)

    # -- wirings (the program the executor runs) --
    @property
    def block_wiring(self):
        return self._wirings.block

    @property
    def cell_wirings(self) -> list:
        return self._wirings.cells

    def shared_view(self) -> "XLSTM":
        """A model that shares this one's parameter arrays (read-only) but has its own config, wirings and interventions.

        One loaded checkpoint then serves many dashboard sessions: edits, masks and ablations of one view never
        reach another, and the weights are in memory once.
        """
        view = copy.copy(self)  # nn.Module is a dict: the children (and their arrays) are shared, not copied
        # The forward reads its numbers from model.config (soft caps, eps, chunk_size), and a field may be assigned
        # between calls: a shared config let `view.config.chunk_size = 128` change the model and every other view.
        view.config = copy.deepcopy(self.config)
        view._wirings = _Wirings(copy.deepcopy(self.block_wiring), copy.deepcopy(self.cell_wirings))
        view.interventions = Interventions(view.probe_names, heads_of=view.cell_heads)
        if any(getattr(b, "wiring", None) is not None for b in self.blocks):
            # A neuron block's AutoNCP lives on its modules (block.wiring is block.neurons.wiring, the cell holds it
            # too, and their mask caches are keyed by its version): a view needs its own module objects around its
            # own copy of the wiring, or a synapse edit in one dashboard session rewired every other session.
            view.backbone = copy.copy(self.backbone)
            view.backbone.blocks = [_own_neuron_wiring(b) if getattr(b, "wiring", None) is not None else b
                                    for b in self.blocks]
        return view

    @property
    def activation_dtype(self) -> mx.Dtype:
        """The dtype activations and matmuls run in: `compute_dtype` resolved against the embedding weights."""
        return resolve_compute_dtype(self.compute_dtype, self.backbone.embeddings.weight.dtype)

    @property
    def blocks(self) -> list:
        return self.backbone.blocks

    @property
    def head_weight(self) -> mx.array:
        """The [vocab, D] matrix of the logits: lm_head's, or the embedding matrix with tie_word_embeddings."""
        return self.backbone.embeddings.weight if self.config.tie_word_embeddings else self.lm_head.weight

    # -- forward --
    def __call__(self, input_ids: mx.array, state: list | None = None, mode: str = "chunkwise"):
        """logits [B, S, V] (float32) and the new state (one entry per block)."""
        return Executor(self).forward(input_ids, state=state, mode=mode)

    def compiled_step(self):
        """A decode step `(token [B, 1], state) -> (logits, state)` under mx.compile, for fast generation."""
        return self.compiled("recurrent")

    def graph_signature(self) -> tuple:
        """What a compiled forward bakes in: a graph traced under one signature must not run under another.

        activations.FAST_CPU_MATH picks the exp/tanh/sigmoid the graph is traced with. Neuron blocks' wirings count
        too: their masks / reversal potentials are built from the wiring inside the traced forward. config.chunk_size
        too: the chunkwise form's chunk length is traced in, and a user may change it between calls (a GPU prefill
        at 7B sizes is fastest at 256, benchmarks/prefill_breakdown.py), and every other config field assigned
        since (config.version: a gate or logit soft cap, an eps is traced in as a constant). The activation dtype
        too: compute_dtype may be changed between calls, and the casts to it are traced in."""
        neurons = tuple(b.wiring.version for b in self.blocks if getattr(b, "wiring", None) is not None)
        return (activations.FAST_CPU_MATH, gemv_kernels.resolve_mode(), mlstm_kernels.resolve_mode(),
                str(self.activation_dtype), self.config.chunk_size, self.config.version, self.block_wiring.version,
                tuple((w.version, len(w.cells), len(w.connections)) for w in self.cell_wirings),
                tuple(i.id for i in self.interventions.list()), neurons)

    def compiled(self, mode: str = "chunkwise"):
        """`(ids, state) -> (logits, state)` under mx.compile (prefill with "chunkwise", decode with "recurrent").

        The compiled graph bakes in the wiring and interventions, so it is re-traced when a wiring version or the
        intervention list changes (measured by benchmarks/trace_overhead.py); tracing and stepping stay eager.
        """
        if mode not in MODES:  # raised while mx.compile traces, it would only show at the first call
            raise ValueError(f"compiled mode must be one of {MODES}, got {mode!r}")
        cache: dict = {}
        template = [block.new_state(1) for block in self.blocks]  # the state's structure, for the flat inputs
        zeros: dict[int, list] = {}  # batch -> each block's zero state (what a passed state is checked against)
        signature = self.graph_signature

        def flatten(state):
            return [a for s in state for a in state_arrays(s)]

        def unflatten(flat):
            flat = list(flat)
            return [state_like(t, flat) for t in template]

        def raw(token, flat):
            logits, state = Executor(self).forward(token, state=unflatten(flat), mode=mode, check=False)
            return logits, flatten(state)

        # The state the previous call returned, so that feeding it back (a decode loop) skips check_state, which
        # builds a zero state per block to compare shapes with (~0.2 ms a step at D=256, ~7% of a decode step).
        last: dict = {}

        def returned_last(state, batch) -> list | None:
            if state is None or state is not last.get("list") or batch != last["batch"]:
                return None
            flat = flatten(state)
            same = len(flat) == len(last["flat"]) and all(a is b for a, b in zip(flat, last["flat"]))
            return flat if same else None

        def call(token, state, read_ids: bool):
            if read_ids:
                token = _check_ids(token, self.config.vocab_size)
            else:
                _check_lazy_ids(token)
            if state is not None and len(self.interventions):
                self.interventions.check_no_positions()
            key = signature()
            fn = cache.get(key)
            fresh = fn is None
            if fresh:
                mlstm_kernels.warm_up()  # the kernels' self-checks read values: not while mx.compile traces
                gemv_kernels.warm_up()
                cache.clear()
                fn = cache[key] = mx.compile(raw, inputs=self.state)
                step.graph = fn  # the compiled (token, flat state) function (benchmarks/decode_host.py times it alone)
            batch = token.shape[0]
            flat_in = returned_last(state, batch)
            # mx.compile traces again for new input shapes or dtypes: then keep the model's arrays in case it raises
            # (a decode loop feeding back the returned state with same-shaped tokens never traces, and pays nothing)
            fresh = fresh or flat_in is None or (token.shape, token.dtype) != last.get("token")
            if flat_in is None:
                if batch not in zeros:  # each block's zero state per batch size, built once (MLX arrays are immutable)
                    zeros[batch] = [block.new_state(batch) for block in self.blocks]
                state = Executor(self).check_state(state, batch, zeros[batch])
                flat_in = flatten(state)
            with kept_inputs(self, active=fresh):
                logits, flat = fn(token, flat_in)
            out = unflatten(flat)
            last.update(list=out, flat=list(flat), batch=batch, token=(token.shape, token.dtype))
            return logits, out

        def step(token, state):
            return call(token, state, read_ids=True)

        def lazy(token, state):
            """The same step for ids that are still being computed (sampled on the device from this model's own
            logits, so inside the vocabulary by construction): their values are not read on the host, which would
            wait for the previous step to finish, so a decode loop can build step t+1 while the device runs step t
            (xlstm_viz.generate does). Shape and dtype are still checked."""
            return call(token, state, read_ids=False)

        step.lazy = lazy
        return step

    # `run_with_trace(ids, probes=None, mode="stats"|"full", run_mode=..., state=None) -> Trace` is a method that
    # xlstm_viz.execution.trace attaches (execution reads the model, never the other way round); the model package's
    # __init__ loads it after every model module, so every XLSTM has it.

    def probe_names(self) -> list[str]:
        """All probe names, in execution order (for one token): every cell of every wiring, named like the cell."""
        names = ["embedding"]
        for wiring in self.cell_wirings:
            names.extend(wiring.order())
        return names + ["out_norm", "logits"]

    def cell_heads(self, name: str) -> int | None:
        """How many heads the features of cell `name` split into, from its own block: the cell row's head rule
        (`wiring.block_types`; a cell added by an edit, its cell type's) and that block's dimensions: the block's
        num_heads (an sLSTM block's is `slstm_num_heads`) for per-head cells, one head per feature for the gates and
        a neuron block's per-neuron cells. None for a cell without heads: outside the blocks, head rule "none", or a
        per-head cell of a block type without heads."""
        if not name.startswith("blocks."):
            return None
        _, j, local = name.split(".", 2)
        spec = self.cell_wirings[int(j)].cells.get(name)
        if spec is None:
            return None
        row = block_table(self.config.layer_types()[int(j)]).row(local)
        rule = row.head_rule() if row is not None else cell_type(spec.cell_type).heads
        if rule == "none":
            return None
        if rule == "features":  # one head per feature: a gate's heads, a neuron block's neurons
            return int(spec.params["features"])
        return self.block_heads(int(j))

    def block_heads(self, j: int) -> int | None:
        """Block j's head count, from its block type's dimensions (None: a block type without heads)."""
        table = block_table(self.config.layer_types()[j])
        return int(table.dims_of(self.config)["num_heads"]) if "num_heads" in table.dims else None

    # -- parameters --
    def checkpoint_shapes(self) -> dict[str, tuple[int, ...]]:
        """Expected tensor names and shapes in the NX-AI checkpoint naming."""
        return {name: tuple(value.shape) for name, value in tree_flatten(self.parameters())}

    def init_from_profile(self, profile, seed: int = 0) -> None:
        """Initialise every parameter from a HyperProfile (xlstm_viz.wiring.profiles), e.g. gate bias ranges."""
        initialize(self, profile, seed)

    def save(self, path: str | Path, dtype: str | None = None) -> Path:
        """Write config.json + model.safetensors in the NX-AI 7B naming (a folder `load_model` reads back).

        The tensors follow the config's weight_mode: a model loaded from a fused checkpoint is saved fused, so the
        official xLSTMLarge loads the folder strictly (tools/golden_model.py checks it).
        """
        saved_dtypes = ("float32", "bfloat16", "float16")  # what load_model reads back (int8 once cast silently)
        if dtype is not None and dtype not in saved_dtypes:
            raise ValueError(f"save dtype must be None (as in memory) or one of {saved_dtypes}, got {dtype!r}")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        weights = dict(tree_flatten(self.parameters()))
        if self.config.weight_mode == "fused":
            weights = fuse_weights(weights)
        if dtype is not None:
            weights = {k: v.astype(getattr(mx, dtype)) for k, v in weights.items()}
        mx.save_safetensors(str(path / "model.safetensors"), weights, metadata={"format": "mlx"})
        return path

    def num_parameters(self) -> int:
        return int(sum(int(np.prod(v.shape)) for _, v in tree_flatten(self.parameters())))

    def activation_dtype_name(self) -> str:
        return str(self.activation_dtype).removeprefix("mlx.core.")

    def summary(self) -> str:
        c = self.config
        lines = [
            f"xLSTM  D={c.embedding_dim}  heads={c.num_heads}  blocks={c.num_blocks}  vocab={c.vocab_size}  "
            f"qk_dim={c.qk_dim}  v_dim={c.v_dim}  ffn_dim={c.ffn_dim}  chunk={c.chunk_size}",
            f"parameters: {self.num_parameters():,}" + (f"  source: {self.source}" if self.source else ""),
            f"block types: {', '.join(c.layer_types())}",
            f"compute dtype: {self.activation_dtype_name()} (compute_dtype={self.compute_dtype!r}; weights "
            f"{str(self.backbone.embeddings.weight.dtype).removeprefix('mlx.core.')}; states, gates and norm "
            f"reductions float32)",
        ]
        return "\n".join(lines)
