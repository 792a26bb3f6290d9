"""Probe statistics: mean, std, abs-max and L2 norm over each head's features, per token, three ways.

- `kernel_stats`: a fused numba kernel (`stats_kernel`) on arrays in host memory; used on MLX's CPU device, where it
  reads MLX's buffers in place.
- `stats_table`: one compiled MLX function for a whole trace; used on GPUs, so that only the stats cross to the host.
- `numpy_stats`: the plain numpy reference, in float64. The tests hold the other two to it.

The memory norms (‖C_t‖_F, ‖n_t‖, m_t) are not computed here: they are the memory cell's own MemoryTrace
(`model/mlstm_cell.py`), which the trace passes through as raw columns.

A layout describes the inputs of one trace: per array [B, S, features], (features, heads, kind). kind 1: the four
stats over each head's features, each [B, S, heads]; kind 0: the array is taken as it is (gate values, memory norms)
under the stat name "raw".
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import mlx.core as mx
import numpy as np

BASE_STATS = ("mean", "std", "absmax", "l2")
Layout = tuple[tuple[int, int, int], ...]


def numpy_stats(arrays, layout: Layout) -> list[dict[str, np.ndarray]]:
    """The reference: float64 numpy, centred std, one probe at a time."""
    out = []
    for a, (features, heads, kind) in zip(arrays, layout):
        if not kind:
            out.append({"raw": np.array(a, dtype=np.float32)})
            continue
        x = np.asarray(a, dtype=np.float64)
        x = x.reshape(*x.shape[:-1], heads, features // heads)
        stats = {"mean": x.mean(-1), "std": x.std(-1), "absmax": np.abs(x).max(-1), "l2": np.sqrt(np.square(x).sum(-1))}
        out.append({k: v.astype(np.float32) for k, v in stats.items()})
    return out


_KERNEL = None


def _kernels():
    """The compiled kernels module, or None (with a warning, once) where numba cannot be imported."""
    global _KERNEL
    if _KERNEL is None:
        try:
            from xlstm_viz.execution import stats_kernel as kernels
        # ImportError: e.g. a Python release that numba does not support yet; RuntimeError: numba found no writable
        # place for its cache (read-only site-packages and home)
        except (ImportError, RuntimeError) as err:
            warnings.warn(f"the numba stats kernel is unavailable ({type(err).__name__}: {err}); stats traces use "
                          "the numpy reference, several times slower", RuntimeWarning,
                          stacklevel=3)
            kernels = False
        _KERNEL = kernels
    return _KERNEL or None


def kernels_available() -> bool:
    return _kernels() is not None


def describe() -> str:
    """One line for `xlstm-viz info`: which path computes a stats trace here, and how its forward runs."""
    from xlstm_viz.execution.trace import compiled_by_default  # trace imports this module

    forward = ("; chunkwise traces run as one compiled graph (run_with_trace(compiled=False): cell by cell)"
               if compiled_by_default() else
               "; traces run cell by cell (run_with_trace(compiled=True): one compiled graph)")
    return _stats_path() + forward


def _stats_path() -> str:
    if mx.default_device() != mx.cpu:
        from xlstm_viz.execution import stats_gpu

        if stats_gpu.available():
            return (f"stats traces: one fused CUDA launch (kernels/probe_stats.cu, reading bf16 probes as they are) on "
                    f"{mx.default_device()}")
        return f"stats traces: one compiled MLX table on {mx.default_device()}"
    if kernels_available():
        import numba

        return f"stats traces: numba {numba.__version__} kernel on MLX's buffers"
    return "stats traces: numpy reference (numba unavailable; several times slower)"


def kernel_stats(arrays, layout: Layout) -> list[dict[str, np.ndarray]]:
    """The same stats as `numpy_stats` from the fused kernel, in one call. arrays: arrays in host memory,
    [..., features] each (on MLX's CPU device, views of MLX's buffers, read in place). Each stat comes back as a
    [..., heads] view of one shared buffer."""
    kernels = _kernels()
    if kernels is None:
        return numpy_stats(arrays, layout)
    table, keep, slices, first = [], [], [], 0
    for a, (features, heads, kind) in zip(arrays, layout):
        if a.shape[-1] != features:
            raise ValueError(f"stats input of shape {a.shape} does not have the layout's {features} features")
        if not kind:
            slices.append(None)
            continue
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            a = np.ascontiguousarray(a, dtype=np.float32)
        keep.append(a)  # the kernel reads it by address: keep the converted copy alive
        rows = a.size // (features // heads)
        table.append((a.__array_interface__["data"][0], rows, features // heads, first))
        slices.append((first, first + rows, (*a.shape[:-1], heads)))
        first += rows
    out = np.empty((4, first), np.float32)  # rows: mean, std, absmax (written as its int32 bits), l2
    if table:
        kernels.table_stats(np.array(table, np.int64), out[0], out[1], out[3], out[2].view(np.int32))
    columns = []
    for a, where in zip(arrays, slices):
        if where is None:
            columns.append({"raw": np.array(a, dtype=np.float32)})
        else:  # one slice and one reshape per probe; iterating the first axis makes the four views in C
            start, stop, shape = where
            columns.append(dict(zip(BASE_STATS, out[:, start:stop].reshape(4, *shape))))
    return columns


@lru_cache(maxsize=64)
def table_columns(layout: Layout) -> list[dict[str, tuple[int, int]]]:
    """Where each input of `stats_table(layout)` lands in its output: per input, stat -> (offset, width).

    Inputs whose heads have the same width are reduced together, so the table costs a few reductions per width
    rather than four per probe.
    """
    columns: list[dict[str, tuple[int, int]]] = [{} for _ in layout]
    offset = 0
    for width, members in _width_classes(layout).items():
        for stat in BASE_STATS:
            for i in members:
                heads = layout[i][1]
                columns[i][stat] = (offset, heads)
                offset += heads
    for i, (features, _, kind) in enumerate(layout):
        if not kind:
            columns[i]["raw"] = (offset, features)
            offset += features
    return columns


@lru_cache(maxsize=64)
def table_slices(layout: Layout) -> list[tuple[tuple[str, slice], ...]]:
    """`table_columns` as ready slices of the table's last axis (the per-trace unpacking is then one index each)."""
    return [tuple((stat, slice(o, o + w)) for stat, (o, w) in c.items()) for c in table_columns(layout)]


def _width_classes(layout: Layout) -> dict[int, list[int]]:
    classes: dict[int, list[int]] = {}
    for i, (features, heads, kind) in enumerate(layout):
        if kind:
            classes.setdefault(features // heads, []).append(i)
    return classes


def _stats_table(layout: Layout):
    """One compiled function for a whole trace: every probe's stats in one [B, S, C] array (`table_columns`).

    On a small model a stats trace's cost was per-op dispatch, not arithmetic (benchmarks/trace_overhead.py), so
    the inputs are grouped by head width and reduced together.
    """
    classes = _width_classes(layout)

    def table(*arrays):
        B, S = arrays[0].shape[:2]
        columns = []
        for width, members in classes.items():
            parts = [arrays[i].astype(mx.float32).reshape(B, S, layout[i][1], width) for i in members]
            x = parts[0] if len(parts) == 1 else mx.concatenate(parts, axis=2)
            if width == 1:  # one feature per head (gates): no reductions, so no kernel launches
                x = x[..., 0]
                columns += [x, mx.zeros_like(x), mx.abs(x), mx.abs(x)]
                continue
            mean = mx.mean(x, axis=-1)
            # std from centred values: the moments form, fused with an FMA on a GPU, left sqrt(rounding) ~1e-4
            # where std is exactly 0. l2 then needs no pass of its own: sum x^2 = width * (std^2 + mean^2), a sum of
            # two non-negative terms (no cancellation). Each pass over x is a kernel launch, and launches are what a
            # small model's trace pays for on a GPU.
            variance = mx.mean(mx.square(x - mean[..., None]), axis=-1)
            absmax = mx.max(mx.abs(x), axis=-1)
            l2 = mx.sqrt(width * (variance + mx.square(mean)))
            l2 = mx.where(mx.isinf(absmax), absmax, l2)  # an inf makes the variance NaN; the norm is inf
            columns += [mean, mx.sqrt(variance), absmax, l2]
        columns += [arrays[i].astype(mx.float32) for i, (_, _, kind) in enumerate(layout) if not kind]
        return mx.concatenate(columns, axis=-1)

    return mx.compile(table)


_TABLES: dict[tuple, object] = {}


def stats_table(layout: Layout):
    """The compiled stats function for a layout (cached: a model traced again re-uses it)."""
    fn = _TABLES.get(layout)
    if fn is None:
        if len(_TABLES) >= 32:
            _TABLES.pop(next(iter(_TABLES)))
        fn = _TABLES[layout] = _stats_table(layout)
    return fn
