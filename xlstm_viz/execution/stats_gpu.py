"""Probe statistics in one CUDA launch (`kernels/row_stats.cu` through `mx.fast.cuda_kernel`).

On a GPU the compiled MLX table (`stats.stats_table`) reduces each head width with several kernels: about 35
launches for the demo model, 0.5 ms of a 3 ms forward on an H100 (benchmarks/trace_phases.py). Here every probe is
packed with one concatenation, one warp reduces each head row, and the stats and the raw columns leave the device in
one copy. The MLX table stays the reference, and the path on Metal until a Metal twin of the kernel is tested.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import NamedTuple

import mlx.core as mx
import numpy as np

from xlstm_viz.execution.stats import BASE_STATS, Layout

WARP = 32
THREADS = 256  # threads per block: 8 rows


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


_KERNEL = None


def _kernel():
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = mx.fast.cuda_kernel(name="xlstm_viz_row_stats", input_names=["flat", "rows"],
                                      output_names=["out"], source=_source("row_stats.cu"))
    return _KERNEL


class _Plan(NamedTuple):
    reduced: list[int]  # kind-1 inputs, packed in this order
    raw: list[int]  # kind-0 inputs, copied after the stats
    rows: mx.array  # int32 [rows padded to THREADS / WARP, 2]: offset into the packed buffer, width
    views: list  # per input: ("stats", first row, stop row, stats shape) or ("raw", offset, size, shape)
    padded: int


_PLANS: dict[tuple, _Plan] = {}


def _plan(shapes: tuple, layout: Layout) -> _Plan:
    plan = _PLANS.get((shapes, layout))
    if plan is not None:
        return plan
    reduced, raw, descriptors, views, row, offset = [], [], [], [None] * len(shapes), 0, 0
    for i, (shape, (features, heads, kind)) in enumerate(zip(shapes, layout)):
        if shape[-1] != features:
            raise ValueError(f"stats input {i} has shape {shape}, but the layout gives it {features} features")
        if kind:
            width, count = features // heads, int(np.prod(shape)) // (features // heads)
            descriptors.append(np.stack([offset + width * np.arange(count), np.full(count, width)], axis=1))
            views[i] = ("stats", row, row + count, (*shape[:-1], heads))
            reduced.append(i)
            row += count
            offset += count * width
    rows_per_block = THREADS // WARP
    padded = max(rows_per_block, -(-row // rows_per_block) * rows_per_block)
    descriptors.append(np.zeros((padded - row, 2), np.int64))  # width 0: the padding rows write nothing
    raw_offset = padded * 4
    for i, (shape, (_, _, kind)) in enumerate(zip(shapes, layout)):
        if not kind:
            size = int(np.prod(shape))
            views[i] = ("raw", raw_offset, raw_offset + size, shape)
            raw.append(i)
            raw_offset += size
    if offset >= 2**31:
        raise ValueError(f"a stats trace of {offset} numbers is too large for the CUDA kernel's int32 offsets")
    rows = mx.array(np.concatenate(descriptors).astype(np.int32))
    plan = _Plan(reduced, raw, rows, views, padded)
    if len(_PLANS) >= 64:
        _PLANS.pop(next(iter(_PLANS)))
    _PLANS[(shapes, layout)] = plan
    return plan


def pack(arrays, layout: Layout) -> tuple[mx.array, _Plan]:
    """One float32 buffer: the stats of the kind-1 inputs ([rows, 4]) followed by the kind-0 inputs, for one copy."""
    plan = _plan(tuple(tuple(a.shape) for a in arrays), layout)
    parts = [arrays[i].astype(mx.float32).reshape(-1) for i in plan.reduced]
    parts = [mx.zeros((1,), mx.float32)] if not parts else parts
    flat = parts[0] if len(parts) == 1 else mx.concatenate(parts)
    stats = _kernel()(inputs=[flat, plan.rows], grid=(plan.padded * WARP, 1, 1), threadgroup=(THREADS, 1, 1),
                      output_shapes=[(plan.padded, 4)], output_dtypes=[mx.float32])[0]
    out = [stats.reshape(-1)] + [arrays[i].astype(mx.float32).reshape(-1) for i in plan.raw]
    return (out[0] if len(out) == 1 else mx.concatenate(out)), plan


def unpack(host: np.ndarray, plan: _Plan) -> list[dict[str, np.ndarray]]:
    """The host copy of `pack`'s buffer as `stats.kernel_stats` returns it (views, no copies)."""
    stats = host[: plan.padded * 4].reshape(plan.padded, 4)
    columns = []
    for kind, start, stop, shape in plan.views:
        if kind == "stats":
            columns.append(dict(zip(BASE_STATS, stats[start:stop].T.reshape(4, *shape))))
        else:
            columns.append({"raw": host[start:stop].reshape(shape)})
    return columns


def fused_stats(arrays, layout: Layout) -> list[dict[str, np.ndarray]]:
    """`pack`, evaluate, `unpack`: the same stats as `stats.numpy_stats`, for tests and one-off use."""
    packed, plan = pack(arrays, layout)
    mx.eval(packed)
    return unpack(np.array(packed), plan)
