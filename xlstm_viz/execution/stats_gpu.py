"""A whole stats trace in one CUDA launch (`kernels/probe_stats.cu` through `mx.fast.cuda_kernel`).

On a GPU the compiled MLX table (`stats.stats_table`) reduces each head width with several kernels: about 35
launches for the demo model, 0.5 ms of a 3 ms forward on an H100 (benchmarks/trace_phases.py). Here one launch reads
every probe where it lies and in its own dtype (no packing copy, no float32 widening: at 7B and 2,048 tokens the
probes are 12.2 GB of bf16, which float32 copies made 24.5 GB more to write and read, `benchmarks/trace_bytes.py`),
one warp reduces each head row in float32, and copies the raw columns (gate values, memory norms); the stats leave
the device in one copy. The memory norms come from the memory cell's own trace (a raw column here). The MLX table
stays the reference, and the path on Metal until a Metal twin of the kernel is tested.

`prepare` lists the inputs (each tensor once) and builds the plan: warp tasks (a run of stats rows of one width, or a
copy chunk, each with its input, offset, width, rows, destination and dtype). Plans are cached per trace structure; the tests run a plan in
numpy where there is no CUDA.
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
THREADS = 256  # threads per block: 8 warp tasks
COPY_CHUNK = 1024  # numbers per copy task
TASK_NUMBERS = 8192  # numbers of one width that a stats task covers (a whole number of rows, at least one)
MAX_ROWS = 1024  # rows per stats task at most (narrow rows: a lane per row, 32 rows at a time)
TASK_FIELDS = 7  # input, offset, width, rows, destination, kind (1 stats, 0 copy), dtype
# The dtypes the kernel reads as they are (its dtype codes); any other is widened to float32 first.
DTYPES = {mx.float32: 0, mx.bfloat16: 1, mx.float16: 2}
BODY_MARK = "// --- body ---"


def available() -> bool:
    """True on MLX's CUDA backend (the kernel is CUDA source)."""
    cuda = getattr(mx, "cuda", None)
    return (mx.default_device() != mx.cpu and cuda is not None and cuda.is_available()
            and hasattr(mx.fast, "cuda_kernel"))


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


def kernel_parts(source: str) -> tuple[str, str]:
    """(header, body) of the kernel source: device functions at namespace scope, then the kernel's body."""
    header, mark, body = source.partition(BODY_MARK)
    if not mark:
        raise ValueError(f"the stats kernel source has no {BODY_MARK!r} line between its header and its body")
    return header, body


def _kernel(inputs: int):
    """The kernel for this many inputs (its signature lists each one, typed by MLX after the input's dtype)."""
    kernel = _KERNELS.get(inputs)
    if kernel is None:
        source = _source("probe_stats.cu")
        header, body = kernel_parts(source)
        cases = " ".join(f"case {j}: return in{j};" for j in range(inputs))
        kernel = mx.fast.cuda_kernel(
            name=kernel_name(inputs, source), input_names=[f"in{j}" for j in range(inputs)] + ["tasks"],
            output_names=["out"], source=body.replace("SELECT_INPUTS", cases), header=header)
        _KERNELS[inputs] = kernel
    return kernel


class _Plan(NamedTuple):
    tasks: mx.array  # int32 [blocks * 8, TASK_FIELDS]
    blocks: int  # thread blocks of 8 warp tasks
    stats_rows: int
    size: int  # numbers in the output
    views: list  # per layout entry: ("stats", first, stop, shape) or ("raw", start, stop, shape)


_PLANS: dict[tuple, _Plan] = {}


def rows_per_task(width: int) -> int:
    """Head rows of one width that one warp task covers: about TASK_NUMBERS numbers, so that a warp's task
    fetch is paid once for many rows (kernels/probe_stats.cu says why)."""
    return int(min(MAX_ROWS, max(1, TASK_NUMBERS // width)))


def _plan(key: tuple, shapes: list, dtypes: list, slots: list, layout: Layout) -> _Plan:
    """Tasks for one trace's structure. shapes, dtypes: per input (dtype codes); slots: per layout entry, the input
    it reads."""
    # Built with numpy: a long trace of a large model has millions of stats rows.
    stats_parts, copy_parts, views, rows = [], [], [], 0
    for j, (features, heads, kind) in enumerate(layout):
        shape = shapes[slots[j]]
        if shape[-1] != features:
            raise ValueError(f"stats input {j} has shape {shape}, but the layout gives it {features} features")
        size = int(np.prod(shape))
        if kind:
            width = features // heads
            count = size // width
            per = rows_per_task(width)
            first = np.arange(0, count, per, dtype=np.int64)  # each task's first row
            n = len(first)
            stats_parts.append(np.stack([np.full(n, slots[j]), first * width, np.full(n, width),
                                         np.minimum(per, count - first), 4 * (rows + first), np.ones(n, np.int64),
                                         np.full(n, dtypes[slots[j]])], axis=1))
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
                                        np.minimum(COPY_CHUNK, size - offsets), np.ones(len(offsets), np.int64),
                                        at + offsets, np.zeros(len(offsets), np.int64),
                                        np.full(len(offsets), dtypes[slots[j]])], axis=1))
            at += size
    if at >= 2**31 or any(int(np.prod(s)) >= 2**31 for s in shapes):
        raise ValueError(f"a stats trace of {at} numbers (inputs of up to {max(int(np.prod(s)) for s in shapes)}) "
                         "is too large for the CUDA kernel's int32 offsets")
    tasks_per_block = THREADS // WARP
    tasks = sum(len(p) for p in stats_parts + copy_parts)
    blocks = max(1, -(-tasks // tasks_per_block))
    padding = np.zeros((blocks * tasks_per_block - tasks, TASK_FIELDS), np.int64)  # width 0: nothing to do
    table = np.concatenate(stats_parts + copy_parts + [padding])
    plan = _Plan(mx.array(table.astype(np.int32)), blocks, rows, max(at, 1), views)
    if len(_PLANS) >= 64:
        _PLANS.pop(next(iter(_PLANS)))
    _PLANS[key] = plan
    return plan


def prepare(arrays, layout: Layout) -> tuple[list[mx.array], _Plan]:
    """The kernel's inputs (each tensor once, in its own dtype where the kernel reads it) and the plan of its tasks,
    cached per trace structure."""
    inputs, index, where = [], {}, []
    for a in arrays:  # a tensor that two probes see (blocks.1.in is blocks.0.out) is one input
        j = index.get(id(a))
        if j is None:
            j = index[id(a)] = len(inputs)
            inputs.append(a if a.dtype in DTYPES else a.astype(mx.float32))
        where.append(j)
    shapes = [tuple(a.shape) for a in inputs]
    dtypes = [DTYPES[a.dtype] for a in inputs]
    key = (tuple(shapes), tuple(dtypes), tuple(where), layout)
    return inputs, _PLANS.get(key) or _plan(key, shapes, dtypes, where, layout)


def pack(arrays, layout: Layout) -> tuple[mx.array, _Plan]:
    """One float32 buffer: per layout entry its stats ([rows, 4]) or its raw numbers, computed by one launch that
    reads every array where it lies (`unpack` reads it)."""
    inputs, plan = prepare(arrays, layout)
    # The kernel's signature lists every input: a count rounded up to 16 * 4^k (the spare ones repeat the first)
    # keeps the compiled variants few when the probe selection changes (each costs about 2 s of NVRTC). MLX types
    # each input pointer after its dtype but caches the module by name: one build serves every dtype pattern, as the
    # kernel reads each input through its task's dtype code, never through the declared type.
    count = 16
    while count < len(inputs):
        count *= 4
    spare = (inputs[:1] or [mx.zeros((1,), mx.float32)]) * (count - len(inputs))
    out = _kernel(count)(
        inputs=inputs + spare + [plan.tasks], template=[("THREADS", THREADS)], grid=(plan.blocks * THREADS, 1, 1),
        threadgroup=(THREADS, 1, 1), output_shapes=[(plan.size,)], output_dtypes=[mx.float32])[0]
    return out, plan


def unpack(host: np.ndarray, plan: _Plan) -> list[dict[str, np.ndarray]]:
    """The host copy of `pack`'s buffer: per layout entry its stats as `stats.kernel_stats` returns them (views, no
    copies)."""
    columns = []
    stats = host[: 4 * plan.stats_rows].reshape(-1, 4)
    for kind, start, stop, shape in plan.views:
        if kind == "stats":
            columns.append(dict(zip(BASE_STATS, stats[start:stop].T.reshape(4, *shape))))
        else:
            columns.append({"raw": host[start:stop].reshape(shape)})
    return columns


def fused_stats(arrays, layout: Layout):
    """`pack`, evaluate, `unpack`: the stats of `stats.numpy_stats`, for tests and one-off use."""
    packed, plan = pack(arrays, layout)
    mx.eval(packed)
    return unpack(np.array(packed, copy=False), plan)
