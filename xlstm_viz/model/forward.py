"""The model's forward: the block wiring between blocks, each block's cell wiring inside it, each cell by the pure
function of its registered type (`xlstm_viz.wiring.block_types.CELL_TYPES`).

One code path serves everything: `model(...)` drains the generator `Executor.run` without an observer; traces and the
debugger pass an observer (`xlstm_viz.model.observer.Observer`) and receive a `CellEvent` after every cell (a
`StateEvent` after a stateful one). A block's state is its stateful cell's state when its table has one (the
mLSTM block: MLSTMState), else a dict {cell local name: state}. Wiring edits are read through the wirings'
`version` counters, so a toggle costs one re-plan of the edited wiring and no weight copies: masks multiply the
weights they feed inside the forward (they are inputs of the computation, not baked into parameters).

Block-level semantics (residual stream): the stream always passes through a block; an edge j -> k adds
polarity * enabled * contribution_j to the stream entering k, where contribution_j = block_j(x) - x. With the default
wiring (one enabled +1 residual edge into each node) the stream entering k is exactly block_{k-1}'s output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator

import mlx.core as mx
import numpy as np

from xlstm_viz.model import gemv_kernels
from xlstm_viz.model.activations import soft_cap
from xlstm_viz.model.cells import CellParams, linear
from xlstm_viz.model.norms import LN_EPS, layer_norm, rms_norm
from xlstm_viz.model.observer import CellEvent, StateEvent
from xlstm_viz.wiring.block_types import CELL_TYPES, block_table

MODES = ("chunkwise", "recurrent")


@dataclass
class _Input:
    src: str  # block-local source cell name
    polarity: int
    enabled: bool
    feature_mask: mx.array | None


@dataclass
class _CellStep:
    name: str
    local: str
    cell_type: str
    inputs: list[_Input]
    polarity: int = 1  # a cell's own polarity flips the sign of its output
    params: dict | None = None  # the wiring's cell params (weight path, num_heads, ...)
    fn: Any = None  # the cell type's pure function
    stateful: bool = False
    traces: bool = False


@dataclass
class _BlockPlan:
    version: Any
    steps: list[_CellStep]
    weight_masks: dict[str, mx.array]  # checkpoint-relative weight path -> mask (only sparsified weights)
    weight_source: dict[str, str]  # weight path -> weight path it shares (featurizer sharing)
    weight_rows: dict[str, mx.array]  # weight path -> row index tying its feature groups (share_feature_groups)
    feature_index: dict[str, mx.array]  # weightless cell (local name) -> index tying its output's feature groups
    flat_step: bool = False  # every cell's type takes one token's activations as [B, F] (CellType.flat_step)
    # Projections that read one value unchanged, by that value's cell: a decode step computes each group's products
    # in one gemv launch (gemv_kernels.multi_linear). Lists of step indices, at most MAX_MATRICES each.
    product_groups: dict[str, list[list[int]]] | None = None


# Cell types whose function is f(W x + b) through cells.weighted (mlstm_block.py), so the product can come first.
GROUPED_TYPES = ("linear", "gate", "output_gate", "linear_silu")


def _product_groups(steps: list[_CellStep], features: dict) -> dict[str, list[list[int]]]:
    """The steps of GROUPED_TYPES with one enabled, unmasked, positive input, grouped by that input's cell (whose
    output must not be re-indexed by tied feature groups, which happens after the cell runs)."""
    from xlstm_viz.model import mlstm_block

    functions = {name: getattr(mlstm_block, fn) for name, fn in (
        ("linear", "linear_cell"), ("gate", "gate"), ("output_gate", "output_gate"), ("linear_silu", "linear_silu"))}
    by_src: dict[str, list[int]] = {}
    for index, step in enumerate(steps):
        if step.cell_type not in GROUPED_TYPES or step.fn is not functions[step.cell_type]:
            continue
        if "weight" not in (step.params or {}) or len(step.inputs) != 1:
            continue
        inp = step.inputs[0]
        if not inp.enabled or inp.polarity != 1 or inp.feature_mask is not None:
            continue
        by_src.setdefault(inp.src, []).append(index)
    size = gemv_kernels.MAX_MATRICES
    return {src: [ix[i:i + size] for i in range(0, len(ix), size)] for src, ix in by_src.items()}


def _plan_block(wiring, prefix: str) -> _BlockPlan:
    cut = len(prefix) + 1
    steps, masks = [], {}
    for name in wiring.order():
        spec = wiring.cells[name]
        inputs = []
        for conn in wiring.inputs_of(name):
            mask = conn.mask if conn.enabled else None
            if conn.weight is not None:
                if mask is not None:
                    prev = masks.get(conn.weight)
                    masks[conn.weight] = mx.array(mask) if prev is None else prev * mx.array(mask)
                mask = None
            inputs.append(_Input(conn.src[cut:], int(conn.polarity), bool(conn.enabled),
                                 None if mask is None else mx.array(mask)))
        ct = CELL_TYPES[spec.cell_type]  # the wiring refuses unregistered types when a cell is added
        if ct.fn is None:
            raise ValueError(f"cell {name!r}: cell type {spec.cell_type!r} is registered without a function, so it "
                             f"cannot run; types that can: {sorted(t for t, c in CELL_TYPES.items() if c.fn)}")
        steps.append(_CellStep(name, name[cut:], spec.cell_type, inputs, int(getattr(spec, "polarity", 1)),
                               spec.params, ct.fn, bool(ct.state), ct.traces))
    sources = {}  # featurizer sharing: a borrowing cell's weight path -> the owner's weight path
    for cell, owner in wiring.shared_weights().items():
        sources[_weight_of(wiring, cell)] = _weight_of(wiring, owner)
    rows, features = {}, {}  # feature-group tying: a weighted cell's weight rows, else the cell's output features
    for cell in wiring.feature_groups():
        index = mx.array(wiring.feature_group_index(cell))
        if "weight" in wiring.cells[cell].params:
            rows[_weight_of(wiring, cell)] = index
        else:
            features[cell[cut:]] = index
    flat = all(CELL_TYPES[step.cell_type].flat_step for step in steps)
    return _BlockPlan(_plan_key(wiring), steps, masks, sources, rows, features, flat,
                      _product_groups(steps, features))


def _plan_key(wiring):
    # add_cell / connect are not edits (no version bump), but a cell added to a live wiring must run
    return (wiring.version, len(wiring.cells), len(wiring.connections))


def _weight_of(wiring, cell: str) -> str:
    """The checkpoint-relative path of the weight a cell owns (the wiring refuses sharing for weightless cells)."""
    return wiring.cells[cell].params["weight"]


def state_arrays(state) -> list:
    """A block state's arrays in a fixed order (for mx.compile's flat inputs)."""
    if state is None:  # a block without stateful cells
        return []
    if isinstance(state, dict):
        return [a for key in sorted(state) for a in state_arrays(state[key])]
    if hasattr(state, "arrays"):
        return list(state.arrays())
    return [state]


def named_state(state, prefix: str = "") -> dict:
    """A cell's or block's state as {name: array}: a state dataclass by its fields (MLSTMState: C, n, m), a dict by
    key (nested names joined by "."), a bare array as "state"."""
    if state is None:
        return {}
    if isinstance(state, dict):
        out = {}
        for key in state:
            out.update(named_state(state[key], f"{prefix}{key}."))
        return out
    fields = getattr(type(state), "__dataclass_fields__", None)
    if fields:
        return {f"{prefix}{name}": getattr(state, name) for name in fields}
    return {prefix.rstrip(".") or "state": state}


def state_like(template, arrays: list):
    """The inverse of `state_arrays`: a state of template's structure from a flat list (consumed from the front)."""
    if template is None:
        return None
    if isinstance(template, dict):
        return {key: state_like(template[key], arrays) for key in sorted(template)}
    if hasattr(template, "arrays"):
        n = len(template.arrays())
        parts = [arrays.pop(0) for _ in range(n)]
        return type(template)(*parts)
    return arrays.pop(0)


class kept_inputs:
    """`with kept_inputs(model):` around a call of `mx.compile(fn, inputs=model.state)` that may trace: if the traced
    function raises, put back the model's arrays. While it traces, MLX (0.32) swaps every captured array for a tracer
    and swaps them back only when the function returns, so an error raised during tracing (a bad argument, a refused
    intervention) left the model's weights as tracers: every later call, eager or compiled, failed with "[eval]
    Attempting to eval an array without a primitive". Only the containers' entries are recorded (no copy)."""

    def __init__(self, module, active: bool = True):
        self.saved: list = []
        if active:
            self._record(module)

    def _record(self, container) -> None:
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, value in items:
            if isinstance(value, (mx.array, tuple)):  # a tuple is replaced whole, so its original is kept whole
                self.saved.append((container, key, value))
            elif isinstance(value, (dict, list)):
                self._record(value)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if kind is not None:
            for container, key, value in self.saved:
                container[key] = value
        return False


def _check_lazy_ids(input_ids) -> mx.array:
    """Type, shape and dtype of input_ids: what can be checked without evaluating them."""
    if isinstance(input_ids, np.ndarray):
        input_ids = mx.array(input_ids)
    if not isinstance(input_ids, mx.array):
        raise TypeError(f"input_ids must be an integer mx.array of shape [B, S], got {type(input_ids).__name__}")
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must have shape [B, S], got shape {tuple(input_ids.shape)}")
    if not mx.issubdtype(input_ids.dtype, mx.integer):
        raise TypeError(f"input_ids must have an integer dtype, got {input_ids.dtype}")
    if input_ids.size == 0:
        raise ValueError(f"input_ids is empty (shape {tuple(input_ids.shape)})")
    return input_ids


def _check_ids(input_ids, vocab_size: int) -> mx.array:
    input_ids = _check_lazy_ids(input_ids)
    # On the host: ids are small, and two MLX reductions with .item() cost two device round trips (~0.1 ms per
    # forward on the CPU device, 2% of the demo model's forward).
    host = np.array(input_ids, copy=False)
    if host.min() < 0 or host.max() >= vocab_size:
        bad = np.argwhere((host < 0) | (host >= vocab_size))[0]
        value = int(host[tuple(bad)])
        raise ValueError(
            f"input_ids[{bad[0]}, {bad[1]}] = {value} is outside the vocabulary [0, {vocab_size})"
        )
    return input_ids


def _check_block_state(where: str, got, want, batch: int) -> None:
    if want is None:
        if got is not None:
            raise ValueError(f"{where} must be None (the block has no stateful cells), got {type(got).__name__}")
        return
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            raise ValueError(f"{where} must be a dict of {sorted(want)}, got "
                             f"{sorted(got) if isinstance(got, dict) else type(got).__name__}")
        for key in want:
            _check_block_state(f"{where}[{key!r}]", got[key], want[key], batch)
        return
    fields = getattr(type(want), "__dataclass_fields__", None)
    if fields:  # a state dataclass (MLSTMState: C, n, m)
        if type(got) is not type(want):  # another block type's state (or a tuple) would fail deep inside MLX
            raise TypeError(f"{where} must be a {type(want).__name__} ({', '.join(fields)}), got "
                            f"{type(got).__name__}")
        for name in fields:
            _check_block_state(f"{where}.{name}", getattr(got, name, None), getattr(want, name), batch)
        return
    if got is not None and not isinstance(got, mx.array):
        raise TypeError(f"{where} must be an mx.array of shape {tuple(want.shape)}, got {type(got).__name__}")
    if got is None or tuple(got.shape) != tuple(want.shape):
        raise ValueError(f"{where} has shape {None if got is None else tuple(got.shape)}, expected "
                         f"{tuple(want.shape)} (batch {batch})")
    if not mx.issubdtype(got.dtype, mx.floating):
        raise TypeError(f"{where} must have a floating dtype (like {want.dtype}), got {got.dtype}")


class Executor:
    def __init__(self, model):
        self.model = model
        cache = model._wirings.__dict__.setdefault("plans", {})
        self._plans: dict[int, _BlockPlan] = cache

    # -- planning --
    def _plan(self, j: int) -> _BlockPlan:
        wiring = self.model.cell_wirings[j]
        plan = self._plans.get(j)
        if plan is None or plan.version != _plan_key(wiring):
            plan = _plan_block(wiring, f"blocks.{j}")
            self._plans[j] = plan
        return plan

    def _stream_plan(self) -> tuple[list[str], dict[str, list]]:
        """Node order and incoming edges of the block wiring, re-read only when its version changes."""
        wiring = self.model.block_wiring
        cached = self._plans.get("stream")
        if cached is None or cached[0] != wiring.version:
            order = wiring.order()
            cached = (wiring.version, order, {n: list(wiring.incoming(n)) for n in order})
            self._plans["stream"] = cached
        return cached[1], cached[2]

    def check_state(self, state, batch: int, zeros: list | None = None) -> list:
        """The state as a list checked against each block's structure and shapes (None: the zero state). zeros: each
        block's `new_state(batch)`, when the caller keeps them (a compiled decode step: building 32 blocks' zero states
        took ~0.4-0.7 ms of host work per step, benchmarks/decode_host.py)."""
        blocks = self.model.blocks
        if zeros is None:
            zeros = [block.new_state(batch) for block in blocks]
        if state is None:
            return list(zeros)
        if not isinstance(state, (list, tuple)) or len(state) != len(blocks):
            raise ValueError(
                f"state must be a list with one entry per block ({len(blocks)}), got "
                f"{type(state).__name__} of length {len(state) if hasattr(state, '__len__') else '?'}"
            )
        state = list(state)
        types = self.model.config.layer_types()
        for j, (entry, want) in enumerate(zip(state, zeros)):
            try:
                _check_block_state(f"state[{j}]", entry, want, batch)
            except TypeError as err:  # name the block, since the usual cause is another block type's state
                raise TypeError(f"{err} (block {j} is a {types[j]!r} block)") from None
        return state

    # -- running --
    def forward(self, input_ids, state=None, mode: str = "chunkwise", check: bool = True):
        return self.forward_observed(input_ids, state=state, mode=mode, observer=None, check=check)

    def forward_observed(self, input_ids, state=None, mode: str = "chunkwise", observer=None, check: bool = True):
        """Run to the end (an observer that does not step only records)."""
        gen = self.run(input_ids, state=state, mode=mode, observer=observer, check=check)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                return stop.value

    def check_ids(self, input_ids, state=None) -> mx.array:
        """The checks of a run's ids that read values (so not inside mx.compile): every id inside the vocabulary,
        and, for a run from the start, every intervention's positions inside the sequence (a position past its end
        would silently change nothing); a run from a state takes no intervention limited to positions."""
        input_ids = _check_ids(input_ids, self.model.config.vocab_size)
        if len(self.model.interventions):
            if state is None:
                self.model.interventions.check_positions(input_ids.shape[1])
            else:
                self.model.interventions.check_no_positions()
        return input_ids

    def run(self, input_ids, state=None, mode: str = "chunkwise", observer=None,
            check: bool = True) -> Generator[CellEvent, None, tuple]:
        """Generator over cells; returns (logits [B, S, V] float32, state). Yields only if observer.stepping.

        check=False skips the token-range check, which reads values (not allowed inside mx.compile).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        model = self.model
        config = model.config
        if check:
            input_ids = self.check_ids(input_ids, state)
        B, S = input_ids.shape
        zero_state = state is None  # the first span starts from the zero state (observers need not read it)
        states = self.check_state(state, B)
        spans = [(None, slice(0, S))] if mode == "chunkwise" else [(t, slice(t, t + 1)) for t in range(S)]
        interventions = model.interventions if len(model.interventions) else None
        emit = observer is not None
        stepping = emit and observer.stepping
        order, incoming = self._stream_plan()
        logits_parts = []
        act_dtype = model.activation_dtype  # compute_dtype: activations and matmuls (float32 or the weights' bf16)
        # Unobserved, unpatched recurrent spans run without the sequence axis when every cell allows it
        # (CellType.flat_step): one token's activations are [B, F], so no projection needs flatten/unflatten nodes.
        # Observers and interventions see [B, 1, F] as before.
        flat = (mode == "recurrent" and not emit and interventions is None
                and all(self._plan(j).flat_step for j in range(len(model.blocks))))

        for token, span in spans:

            def finish(name, cell_type, block, inputs, out, state=None):
                if interventions is not None:
                    out = interventions.apply(name, out, token)
                event = None
                if emit:
                    if state is None:
                        event = CellEvent(name, cell_type, block, token, inputs, out)
                    else:  # (state_in, state, zero_state_in, memory_trace)
                        event = StateEvent(name, cell_type, block, token, inputs, out, *state)
                    observer.on_cell(event)
                return out, event

            ids = input_ids[:, token] if flat else input_ids[:, span]
            x, ev = finish("embedding", "embedding", None, {}, model.backbone.embeddings(ids).astype(act_dtype))
            if stepping:
                yield ev
            stream_in = {order[0]: 0.0}
            stream_out = {order[0]: x}
            for node in order[1:]:
                edges = incoming[node]
                residual = [e for e in edges if e.kind == "residual"]
                if len(edges) == 1 and residual and residual[0].enabled and residual[0].polarity == 1:
                    x = stream_out[residual[0].src]
                else:
                    x = stream_in[residual[0].src] if residual else mx.zeros_like(stream_out[order[0]])
                    for e in edges:
                        if e.enabled:
                            contribution = stream_out[e.src] - stream_in[e.src]
                            x = x + contribution if e.polarity > 0 else x - contribution
                stream_in[node] = x
                if node.startswith("blocks."):
                    j = int(node.split(".")[1])
                    out = yield from self._run_block(j, x, states, mode, observer, finish, stepping,
                                                     zero_state and token in (None, 0), token, flat)
                elif node == "out_norm":
                    norm = model.backbone.get("out_norm")
                    if norm is None:
                        out = x
                    elif config.out_norm_type == "layernorm_offset":  # the original xLSTM's post-blocks norm
                        out = layer_norm(x, norm.weight, LN_EPS)
                    else:
                        out = rms_norm(x, norm.weight, config.norm_eps, norm.get("bias"))
                    out, ev = finish("out_norm", "rmsnorm", None, {"stream": x}, out)
                    if stepping:
                        yield ev
                elif node == "lm_head":
                    fused = gemv_kernels.multi_linear(x, [model.head_weight]) if flat else None
                    logits = soft_cap(fused[0] if fused else linear(x, model.head_weight),
                                      config.output_logit_soft_cap)
                    out, ev = finish("logits", "lm_head", None, {"out_norm": x}, logits)
                    if stepping:
                        yield ev
                    logits_parts.append(out)
                else:
                    raise ValueError(f"block wiring node {node!r} has no executor (known: embedding, blocks.N, out_norm, lm_head)")
                stream_out[node] = out
        if flat:
            logits = logits_parts[0][:, None] if len(logits_parts) == 1 else mx.stack(logits_parts, axis=1)
        else:
            logits = logits_parts[0] if len(logits_parts) == 1 else mx.concatenate(logits_parts, axis=1)
        return logits.astype(mx.float32), states  # bf16 logits (compute_dtype) are widened after the soft cap

    def _run_block(self, j, x, states, mode, observer, finish, stepping, zero_state=False, token=None, flat=False):
        block = self.model.blocks[j]
        interventions = self.model.interventions if len(self.model.interventions) else None
        plan = self._plan(j)
        masks, sources, rows, features = plan.weight_masks, plan.weight_source, plan.weight_rows, plan.feature_index

        def weights(path: str) -> mx.array:
            w = block.param(sources.get(path, path))
            if path in rows:  # tied feature groups: each group's rows are its part's first group's rows
                index = rows[path]
                if w.ndim == 3 and w.shape[0] != index.shape[0]:
                    # a block-diagonal weight [heads, out, in] (sLSTM gates, the original mLSTM's q/k/v): output
                    # feature h * out + o is row o of head h, so the rows are gathered over heads x out
                    H, O, I = w.shape
                    w = mx.take(w.reshape(H * O, I), index, axis=0).reshape(H, O, I)
                else:
                    w = mx.take(w, index, axis=0)
            mask = masks.get(path)
            return w if mask is None else w * mask.astype(w.dtype)

        want_trace = observer is not None and observer.wants_memory_trace(j)
        config = self.model.config
        block_state = states[j]
        single = not isinstance(block_state, dict)  # one stateful cell: the block state is that cell's state
        new_state = None if single else dict(block_state)
        values: dict[str, mx.array] = {}
        # A decode step (flat: unobserved, no interventions) computes each group of projections of one value in one
        # gemv launch, from the weights as `weights` gives them (masked, shared, tied), when the first of the group
        # runs; CUDA only (gemv_kernels), None elsewhere.
        products: dict[int, mx.array] = {}
        group_of = {}
        if flat and plan.product_groups and gemv_kernels.use_kernel():
            for src, groups in plan.product_groups.items():
                for group in groups:
                    for index in group:
                        group_of[index] = group
        for index, step in enumerate(plan.steps):
            if step.local == "in":
                inputs = {"stream": x}
            else:
                inputs = {}
                for inp in step.inputs:
                    value = values[inp.src]
                    if not inp.enabled:
                        value = mx.zeros_like(value)
                    else:
                        if inp.feature_mask is not None:
                            value = value * inp.feature_mask.astype(value.dtype)
                        if inp.polarity < 0:
                            value = -value
                    inputs[inp.src] = value
            event_state = None
            if step.stateful:
                cell_in = block_state if single else block_state[step.local]
                inside = step.params.get("inside")  # a neuron cell: interventions on its neurons act in its recurrence
                hook = None if inside is None or interventions is None else interventions.inside_hook(
                    f"blocks.{j}.{inside}", token, int(step.params["units"]))
                p = CellParams(step.params, config, mode, want_trace if step.traces else False, hook)
                result = step.fn(inputs, weights, cell_in, p)
                out, cell_out = result[0], result[1]
                if single:
                    new_state = cell_out
                else:
                    new_state[step.local] = cell_out
                event_state = (cell_in, cell_out, zero_state, result[2] if len(result) > 2 else None)
            else:
                product = None
                if index in group_of:
                    if index not in products:
                        group = group_of[index]
                        params = [CellParams(plan.steps[g].params, config) for g in group]
                        fused = gemv_kernels.multi_linear(
                            inputs[step.inputs[0].src], [weights(p_.weight_path("linear")) for p_ in params],
                            [weights(p_.bias_path("linear")) for p_ in params])
                        for g, value in zip(group, fused or [None] * len(group)):
                            products[g] = value
                    product = products[index]
                out, _ = step.fn(inputs, weights, None, CellParams(step.params, config, mode, product=product))
            if step.local == "in":
                inputs = {}  # the block input's event shows no inputs: the stream is its output
            elif step.polarity < 0:
                out = -out
            if step.local in features:  # tied feature groups of a weightless cell: its activations
                out = mx.take(out, features[step.local], axis=-1)
            out, ev = finish(step.name, step.cell_type, j, inputs, out, event_state)
            values[step.local] = out
            if stepping:
                yield ev
        states[j] = new_state
        return values["out"]
