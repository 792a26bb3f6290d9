"""A whole stats trace in one CUDA launch (`kernels/probe_stats.cu` through `mx.fast.cuda_kernel`).

On a GPU the compiled MLX table (`stats.stats_table`) reduces each head width with several kernels: about 35
launches for the demo model, 0.5 ms of a 3 ms forward on an H100 (benchmarks/trace_phases.py), and the memory norms
cost the cell's MLX trace, about 0.4 ms of launches per block. Here one launch reads every probe where it lies (no
packing copy: MLX's concatenation is one copy launch per input), one warp reduces each head row, copies the raw
columns (gate values, logits), and thread blocks run each memory cell's recurrence (a head split by rows); everything
leaves the device in one copy. The MLX table stays the reference, and the path on Metal until a Metal twin of the
kernel is tested.

`prepare` lists the inputs (each tensor once) and builds the plan: warp tasks (a stats row or a copy chunk, each
with its input, offset, width and destination) and memory jobs (one per block of ROWS rows of one head). Plans are
cached per trace structure; the tests run a plan in numpy where there is no CUDA.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import mlx.core as mx
import numpy as np

from xlstm_viz.execution.stats import BASE_STATS, Layout

WARP = 32
THREADS = 256  # threads per block: 8 warp tasks, or one memory head
COPY_CHUNK = 1024  # numbers per copy task
# A memory head is split over blocks of ROWS rows of C each, so that a thread keeps at most MAX_ENTRIES_PER_THREAD
# entries of C in registers (no spills: measured on an H100, 128 spilled entries per thread made the D=1024 trace
# 3x slower than the cell's MLX trace). A value head wider than THREADS * MAX_ENTRIES_PER_THREAD does not fit.
MAX_ENTRIES_PER_THREAD = 8
SHARED_BYTES = 48_000  # static shared memory of one block
MEMORY_ROW = 16  # ints per memory job
HEADER = 16  # ints before the memory jobs: [memory jobs, 0, ...]


def available() -> bool:
    """True on MLX's CUDA backend (the kernel is CUDA source)."""
    cuda = getattr(mx, "cuda", None)
    return (mx.default_device() != mx.cpu and cuda is not None and cuda.is_available()
            and hasattr(mx.fast, "cuda_kernel"))


def memory_fits(qk_head_dim: int, v_head_dim: int) -> bool:
    """Whether the kernel runs this head size: one row of C (DV entries) must fit in a block's registers."""
    return qk_head_dim >= 1 and 1 <= v_head_dim <= THREADS * MAX_ENTRIES_PER_THREAD


def memory_blocks(qk_head_dim: int, v_head_dim: int) -> dict[str, int]:
    """How a head is split: ROWS rows of C per block, G blocks per head, ELEMS entries per thread, and CHUNK tokens
    staged in shared memory at a time (their k rows and v, 4 * (ROWS + DV) bytes, plus 96 bytes of gates and sums)."""
    rows = max(1, min(qk_head_dim, THREADS, THREADS * MAX_ENTRIES_PER_THREAD // v_head_dim))
    chunk = min(64, (SHARED_BYTES - 64) // (96 + 4 * (rows + v_head_dim)))
    return {"ROWS": rows, "G": -(-qk_head_dim // rows), "ELEMS": -(-rows * v_head_dim // THREADS), "CHUNK": chunk}


def _source(name: str) -> str:
    """A kernel source from the installed package (xlstm_viz/kernels) or a checkout (<repo>/kernels)."""
    candidates = []
    try:
        candidates.append(Path(str(resources.files("xlstm_viz") / "kernels" / name)))
    except (ModuleNotFoundError, TypeError):
        pass
    candidates.append(Path(__file__).resolve().parents[2] / "kernels" / name)
    for path in candidates:
        if path.is_file():
            return path.read_text()
    raise FileNotFoundError(f"kernel source {name} not found in {[str(p) for p in candidates]}")


_KERNELS: dict[int, object] = {}


def kernel_name(inputs: int, source: str) -> str:
    """The name carries the number of inputs and a digest of the source: MLX caches compiled kernels by name (in
    memory, and in its CUDA JIT as PTX files on disk named after the kernel), so a changed source under an old name
    would run the old code."""
    return f"xlstm_viz_probe_stats_{inputs}_{hashlib.sha1(source.encode()).hexdigest()[:12]}"


def _kernel(inputs: int):
    """The kernel for this many inputs (its signature lists each one)."""
    kernel = _KERNELS.get(inputs)
    if kernel is None:
        source = _source("probe_stats.cu")
        cases = " ".join(f"case {j}: return in{j};" for j in range(inputs))
        kernel = mx.fast.cuda_kernel(
            name=kernel_name(inputs, source), input_names=[f"in{j}" for j in range(inputs)] + ["tasks", "memory"],
            output_names=["out"], source=source.replace("SELECT_INPUTS", cases))
        _KERNELS[inputs] = kernel
    return kernel


class Memory(NamedTuple):
    """One memory cell's recurrence: what it received (k [B, S, NH*DQK], v [B, S, NH*DV], i and f [B, S, NH]) and
    the state entering the sequence (C0, n0, m0 in MLSTMState layout), or None for the zero state."""

    k: mx.array
    v: mx.array
    i: mx.array
    f: mx.array
    state: tuple | None
    num_heads: int


class _Plan(NamedTuple):
    tasks: mx.array  # int32 [row blocks * 8, 5]: input, offset, width, destination, kind (1 stats, 0 copy)
    memory: mx.array  # int32 [HEADER + jobs * MEMORY_ROW]
    blocks: int  # row blocks + memory jobs
    stats_rows: int
    size: int  # numbers in the output
    template: list  # THREADS, DV, ROWS, ELEMS, CHUNK
    views: list  # per layout entry: ("stats", first, stop, shape) or ("raw", start, stop, shape)
    norms: list  # per memory: (start, G, (B, S, NH), B * S * NH)


_PLANS: dict[tuple, _Plan] = {}


def _plan(key: tuple, shapes: list, slots: list, layout: Layout, memories: list, head_dims) -> _Plan:
    """Tasks for one trace's structure. shapes: per input; slots: per layout entry then per memory's k, v, i, f
    (and C0, n0, m0 when given), the input it reads."""
    # One row per warp task: input, offset, width, destination, kind. Built with numpy: a long trace of a large
    # model has millions of stats rows.
    stats_parts, copy_parts, views, rows = [], [], [], 0
    for j, (features, heads, kind) in enumerate(layout):
        shape = shapes[slots[j]]
        if shape[-1] != features:
            raise ValueError(f"stats input {j} has shape {shape}, but the layout gives it {features} features")
        size = int(np.prod(shape))
        if kind:
            width = features // heads
            count = size // width
            r = np.arange(count, dtype=np.int64)
            stats_parts.append(np.stack([np.full(count, slots[j]), r * width, np.full(count, width),
                                         4 * (rows + r), np.ones(count, np.int64)], axis=1))
            views.append(("stats", rows, rows + count, (*shape[:-1], heads)))
            rows += count
        else:
            views.append(("raw", size, shape))
    at = 4 * rows
    for j, view in enumerate(views):
        if view[0] == "raw":
            _, size, shape = view
            views[j] = ("raw", at, at + size, shape)
            offsets = np.arange(0, size, COPY_CHUNK, dtype=np.int64)
            copy_parts.append(np.stack([np.full(len(offsets), slots[j]), offsets,
                                        np.minimum(COPY_CHUNK, size - offsets), at + offsets,
                                        np.zeros(len(offsets), np.int64)], axis=1))
            at += size
    rows_per_block = THREADS // WARP
    tasks = sum(len(p) for p in stats_parts + copy_parts)
    row_blocks = -(-tasks // rows_per_block)
    padding = np.zeros((row_blocks * rows_per_block - tasks, 5), np.int64)  # width 0: nothing to do
    table = np.concatenate(stats_parts + copy_parts + [padding]) if tasks else np.zeros((1, 5), np.int64)
    jobs, norms, slot, dims = [], [], len(layout), None if head_dims is None else tuple(head_dims)
    for memory in memories:
        B, S, _ = shapes[slots[slot]]
        NH = memory.num_heads
        DQK, DV = shapes[slots[slot]][-1] // NH, shapes[slots[slot + 1]][-1] // NH
        if dims not in (None, (DQK, DV)):
            raise ValueError(f"memories of one trace must share the model's head size: DQK x DV {dims} and {(DQK, DV)}")
        if not memory_fits(DQK, DV):
            raise ValueError(f"a memory head of DQK x DV = {DQK} x {DV} does not fit the CUDA kernel "
                             f"(DV at most {THREADS * MAX_ENTRIES_PER_THREAD})")
        dims = (DQK, DV)
        G = memory_blocks(DQK, DV)["G"]
        k, v, i, f = slots[slot:slot + 4]
        state = (-1, -1, -1) if memory.state is None else tuple(slots[slot + 4:slot + 7])
        slot += 4 if memory.state is None else 7
        jobs += [(k, v, i, f, *state, B, b, h, S, NH, DQK, g, G, at)
                 for b in range(B) for h in range(NH) for g in range(G)]
        norms.append((at, G, (B, S, NH), B * S * NH))
        at += (2 * G + 1) * B * S * NH
    if dims is not None and not memory_fits(*dims):
        dims = None  # no memory job can run: any template does
    split = memory_blocks(*dims) if dims else None
    if at >= 2**31:
        raise ValueError(f"a stats trace of {at} numbers is too large for the CUDA kernel's int32 offsets")
    header = np.zeros(HEADER, np.int32)
    header[0] = len(jobs)
    memory_table = np.concatenate([header, np.asarray(jobs, np.int32).reshape(-1)])
    plan = _Plan(mx.array(table.astype(np.int32)), mx.array(memory_table), row_blocks + len(jobs), rows, max(at, 1),
                 [("THREADS", THREADS), ("DV", dims[1] if dims else 1)]
                 + [(name, split[name] if dims else 1) for name in ("ROWS", "ELEMS", "CHUNK")],
                 views, norms)
    if len(_PLANS) >= 64:
        _PLANS.pop(next(iter(_PLANS)))
    _PLANS[key] = plan
    return plan


def prepare(arrays, layout: Layout, memories=(), head_dims=None) -> tuple[list[mx.array], _Plan]:
    """The kernel's inputs (each tensor once, as float32) and the plan of its tasks, cached per trace structure.
    head_dims: the model's (DQK, DV), which fix the kernel's template even in a trace without memory probes (one
    compiled variant per model and input count)."""
    slots = list(arrays)
    for memory in memories:
        slots += [memory.k, memory.v, memory.i, memory.f] + ([] if memory.state is None else list(memory.state))
    inputs, index, where = [], {}, []
    for a in slots:  # a tensor that two probes see (blocks.1.in is blocks.0.out) is one input
        j = index.get(id(a))
        if j is None:
            j = index[id(a)] = len(inputs)
            inputs.append(a if a.dtype == mx.float32 else a.astype(mx.float32))
        where.append(j)
    shapes = [tuple(a.shape) for a in inputs]
    key = (tuple(shapes), tuple(where), layout, tuple((m.num_heads, m.state is None) for m in memories), head_dims)
    return inputs, _PLANS.get(key) or _plan(key, shapes, where, layout, list(memories), head_dims)


def pack(arrays, layout: Layout, memories=(), head_dims=None) -> tuple[mx.array, _Plan]:
    """One float32 buffer: per layout entry its stats ([rows, 4]) or its raw numbers, then per memory its sums of
    squares and m, computed by one launch that reads every array where it lies (`unpack` reads it)."""
    inputs, plan = prepare(arrays, layout, memories, head_dims)
    # The kernel's signature lists every input: a count rounded up to 16 * 4^k (the spare ones repeat the first)
    # keeps the compiled variants few when the probe selection changes (each costs about 2 s of NVRTC).
    count = 16
    while count < len(inputs):
        count *= 4
    spare = (inputs[:1] or [mx.zeros((1,), mx.float32)]) * (count - len(inputs))
    out = _kernel(count)(
        inputs=inputs + spare + [plan.tasks, plan.memory], template=plan.template, grid=(plan.blocks * THREADS, 1, 1),
        threadgroup=(THREADS, 1, 1), output_shapes=[(plan.size,)], output_dtypes=[mx.float32])[0]
    return out, plan


def unpack(host: np.ndarray, plan: _Plan) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """The host copy of `pack`'s buffer: per layout entry its stats as `stats.kernel_stats` returns them, and per
    memory its norms as `stats.memory_stats` does (views, no copies)."""
    columns = []
    stats = host[: 4 * plan.stats_rows].reshape(-1, 4)
    for view in plan.views:
        if view[0] == "stats":
            _, start, stop, shape = view
            columns.append(dict(zip(BASE_STATS, stats[start:stop].T.reshape(4, *shape))))
        else:
            _, start, stop, shape = view
            columns.append({"raw": host[start:stop].reshape(shape)})
    norms = []
    for start, G, shape, plane in plan.norms:
        parts = host[start:start + (2 * G + 1) * plane]
        C_sq, n_sq = parts[: 2 * G * plane].reshape(2, G, *shape)
        norms.append({"C_norm": np.sqrt(C_sq[0] if G == 1 else C_sq.sum(0)),
                      "n_norm": np.sqrt(n_sq[0] if G == 1 else n_sq.sum(0)), "m": parts[2 * G * plane:].reshape(shape)})
    return columns, norms


def fused_stats(arrays, layout: Layout, memories=(), head_dims=None):
    """`pack`, evaluate, `unpack`: the stats of `stats.numpy_stats` (and with memories, the norms of
    `stats.memory_stats`), for tests and one-off use."""
    packed, plan = pack(arrays, layout, memories, head_dims)
    mx.eval(packed)
    columns, norms = unpack(np.array(packed), plan)
    return (columns, norms) if memories else columns
