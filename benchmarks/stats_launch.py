"""The fused stats launch alone (kernels/probe_stats.cu), on probes shaped like a 7B trace's, against a device copy.

    python benchmarks/stats_launch.py [--blocks 8] [--tokens 2048] [--rounds 5] [--baseline DIR]

Per block, bf16 like a compute_dtype="bfloat16" trace: q and k [S, 2048] and v, h [S, 4096] in 8 heads, three FFN
tensors [S, 10944] and six [S, 4096] block-level tensors as one row each, two gate columns [S, 8]; --from-model
takes a real trace's probes instead. Prints the launch's time and its read rate (input bytes over time) against
--peak-gbs. (A first version compared with an MLX elementwise copy, which read 324-765 GB/s on the H200, far below
the launch itself: a fresh output each round, not a copy rate; dropped.) --baseline DIR: a directory with another version's probe_stats.cu and stats_gpu.py (e.g. from `git
show`), timed in the same process in alternating rounds. Needs MLX's CUDA backend.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xlstm_viz  # noqa: E402,F401
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from xlstm_viz.execution import stats_gpu  # noqa: E402


def probes(blocks: int, tokens: int):
    arrays, layout = [], []
    key = mx.random.key(0)
    for _ in range(blocks):
        for width, heads, kind in ((2048, 8, 1), (2048, 8, 1), (4096, 8, 1), (4096, 8, 1), (10944, 1, 1),
                                   (10944, 1, 1), (10944, 1, 1)) + ((4096, 1, 1),) * 6 + ((8, 8, 1), (8, 8, 0)):
            key, sub = mx.random.split(key)
            arrays.append(mx.random.normal((1, tokens, width), key=sub).astype(mx.bfloat16))
            layout.append((width, heads, kind))
    mx.eval(arrays)
    return arrays, tuple(layout)


def model_probes(blocks: int, tokens: int):
    """The arrays and layout a real stats trace of the 7B-shaped model (random bf16 weights) hands the launch."""
    from mlx.utils import tree_map

    from benchmarks.kernel_speed import SEVEN_B
    from xlstm_viz.config import XLSTMConfig
    from xlstm_viz.execution.trace import Executor, Recorder
    from xlstm_viz.model import XLSTM

    config = XLSTMConfig.from_dict({**SEVEN_B, "num_blocks": blocks, "chunk_size": 256})
    model = XLSTM(config, compute_dtype="bfloat16")
    model.update(tree_map(lambda p: p.astype(mx.bfloat16), model.parameters()))
    ids = mx.array(np.random.default_rng(0).integers(0, config.vocab_size, (1, tokens)), mx.int32)
    recorder = Recorder(model, None, "stats")
    logits, _ = Executor(model).forward_observed(ids, observer=recorder)  # eager: the same arrays, no compile
    mx.eval(logits, recorder._outputs, recorder._memory)
    seen = {}
    real = stats_gpu.pack

    def capture(arrays, layout):
        seen["arrays"], seen["layout"] = list(arrays), layout
        return real(arrays, layout)

    stats_gpu.pack = capture
    try:
        recorder.finish(logits)
    finally:
        stats_gpu.pack = real
    return seen["arrays"], seen["layout"]


def load_baseline(directory: Path):
    spec = importlib.util.spec_from_file_location("baseline_stats_gpu", directory / "stats_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    source = (directory / "probe_stats.cu").read_text()
    module._source = lambda name: source  # its kernel, not the checkout's
    return module


def timed(fn, rounds):
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        mx.eval(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baseline", type=Path, default=None)
    ap.add_argument("--peak-gbs", type=float, default=4800.0, help="the device's memory bandwidth (H200: 4.8 TB/s)")
    ap.add_argument("--from-model", action="store_true",
                    help="the probes of a real trace of the 7B-shaped model with --blocks blocks, not synthetic ones")
    ap.add_argument("--split", type=int, default=0,
                    help="also time the same stats as this many launches over consecutive inputs (input count)")
    a = ap.parse_args()
    if not stats_gpu.available():
        raise SystemExit("the fused stats launch needs MLX's CUDA backend")
    arrays, layout = (model_probes if a.from_model else probes)(a.blocks, a.tokens)
    widths = {}
    for x, (features, heads, kind) in zip(arrays, layout):
        w = features // heads if kind else "raw"
        widths[w] = widths.get(w, 0) + x.nbytes
    print("bytes by row width: " + ", ".join(f"{w}: {b / 1e9:.2f} GB" for w, b in sorted(widths.items(), key=str)),
          "; dtypes", sorted({str(x.dtype) for x in arrays}), f"; {len(arrays)} inputs")
    nbytes = sum(x.nbytes for x in arrays)
    versions = {"current": stats_gpu}
    if a.baseline is not None:
        versions["baseline"] = load_baseline(a.baseline)
    want = None
    for name, module in versions.items():  # warm (NVRTC) and check both give the same stats
        packed, plan = module.pack(arrays, layout)
        mx.eval(packed)
        got = module.unpack(np.array(packed), plan)
        if want is None:
            want = got
        else:
            worst = max(float(np.max(np.abs(g[s] - w[s]) / (np.max(np.abs(w[s])) + 1e-30)))
                        for g, w in zip(got, want) for s in w)
            print(f"{name} vs current: largest difference {worst:.2e} of each stat's magnitude")
    print(f"{a.blocks} blocks x {a.tokens} tokens: {nbytes / 1e9:.2f} GB of probes, "
          + ", ".join(f"{name} {len(np.array(m.prepare(arrays, layout)[1].tasks)):,} tasks"
                      for name, m in versions.items()))
    results = {name: [] for name in versions}
    for _ in range(a.rounds):
        for name, module in versions.items():
            results[name].append(timed(lambda m=module: m.pack(arrays, layout)[0], 1)[0])
    if a.split:
        size = -(-len(arrays) // a.split)
        parts = [(arrays[i:i + size], layout[i:i + size]) for i in range(0, len(arrays), size)]
        for x, l in parts:
            mx.eval(stats_gpu.pack(x, l)[0])
        results[f"current in {len(parts)} launches"] = [
            timed(lambda: [stats_gpu.pack(x, l)[0] for x, l in parts], 1)[0] for _ in range(a.rounds)]
    for name, times in results.items():
        t = float(np.median(times))
        print(f"{name}: launch {t * 1e3:.2f} ms (rounds {', '.join(f'{x * 1e3:.2f}' for x in times)}), "
              f"{nbytes / t / 1e9:,.0f} GB/s read, {nbytes / t / 1e9 / a.peak_gbs:.0%} of --peak-gbs")


if __name__ == "__main__":
    main()
