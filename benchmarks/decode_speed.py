"""7B decode step (B=1, random bf16 weights, compute_dtype bfloat16, compiled) with the gemv kernel and with MLX's
matmuls, taking turns in one process, against the bandwidth limit; and one block's projections alone both ways.

    python benchmarks/decode_speed.py [--blocks 32] [--tokens 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xlstm_viz  # noqa: E402,F401
import mlx.core as mx  # noqa: E402
from mlx.utils import tree_flatten, tree_map  # noqa: E402

from kernel_speed import SEVEN_B, copy_bandwidth_gbs, torch_copy_gbs  # noqa: E402
from xlstm_viz.config import XLSTMConfig  # noqa: E402
from xlstm_viz.model import XLSTM, gemv_kernels, mlstm_kernels  # noqa: E402


def median_time(fn, repeats=5):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def projections(blocks=32):
    """One block's projection groups at 7B (q|k|v|o|i|f, gate|up, out, down) x blocks, each way (ms a token)."""
    D, F = 4096, 10944
    groups = [[(2048, D), (2048, D), (4096, D), (4096, D), (8, D), (8, D)], [(F, D), (F, D)], [(D, 4096)], [(D, F)]]
    ws = [[mx.random.normal(s).astype(mx.bfloat16) * 0.01 for s in g] for g in groups]
    xs = [mx.random.normal((1, g[0][1])).astype(mx.bfloat16) for g in groups]
    mx.eval(ws, xs)
    nbytes = sum(w.nbytes for g in ws for w in g) * blocks
    out = {}
    for name, fn in (("kernel", lambda x, g: gemv_kernels.fused_multi_linear(x, g)),
                     ("mlx", lambda x, g: gemv_kernels.reference(x, g))):
        run = lambda: mx.eval([fn(x, g) for _ in range(blocks) for x, g in zip(xs, ws)])
        run()
        t = median_time(run)
        out[name] = (t * 1e3, nbytes / t / 1e9)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    copy = torch_copy_gbs() or copy_bandwidth_gbs()
    print(f"d2d copy {copy:.0f} GB/s (read + write); MLX copy {copy_bandwidth_gbs():.0f}", flush=True)
    print(f"gemv self-check: {gemv_kernels.self_check()}", flush=True)
    for name, (ms, gbs) in projections(a.blocks).items():
        print(f"projections of {a.blocks} blocks, {name}: {ms:.2f} ms, {gbs:.0f} GB/s", flush=True)
    model = XLSTM(XLSTMConfig.from_dict({**SEVEN_B, "num_blocks": a.blocks}), compute_dtype="bfloat16")
    model.update(tree_map(lambda p: p.astype(mx.bfloat16), model.parameters()))
    mx.eval(model.parameters())
    weight_bytes = sum(v.nbytes for k, v in tree_flatten(model.parameters()) if "embeddings" not in k)
    limit = copy * 1e9 / weight_bytes
    print(f"{weight_bytes / 1e9:.2f} GB of weights a token: limit {limit:.0f} tok/s; kernels {mlstm_kernels.warm_up()}",
          flush=True)
    token = mx.array([[1]], mx.int32)
    results = {"kernel": [], "mlx": []}
    steps = {}
    for r in range(a.rounds):
        for mode in ("kernel", "mlx"):
            os.environ[gemv_kernels.ENV] = mode
            step = steps.get(mode) or steps.setdefault(mode, model.compiled_step())
            state = None
            t0 = time.perf_counter()
            for _ in range(3):
                logits, state = step(token, state)
                mx.eval(logits, [s.arrays() for s in state])
            warm = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(a.tokens):
                logits, state = step(token, state)
                mx.eval(logits, [s.arrays() for s in state])
            t = (time.perf_counter() - t0) / a.tokens
            results[mode].append(t)
            print(f"round {r} {mode}: {t * 1e3:.2f} ms/token = {1 / t:.1f} tok/s, {1 / t / limit:.0%} of the limit "
                  f"(first 3 steps {warm:.1f} s)", flush=True)
    k, m = (statistics.median(results[x]) for x in ("kernel", "mlx"))
    print(f"median: gemv kernel {k * 1e3:.2f} ms ({1 / k:.1f} tok/s, {1 / k / limit:.0%}), MLX matmuls {m * 1e3:.2f} "
          f"ms ({1 / m:.1f} tok/s, {1 / m / limit:.0%}); kernel/MLX speed {m / k:.2f}x")
    # the same logits both ways
    os.environ[gemv_kernels.ENV] = "kernel"
    lk, _ = steps["kernel"](token, None)
    os.environ[gemv_kernels.ENV] = "mlx"
    lm, _ = steps["mlx"](token, None)
    print(f"logits max |kernel - mlx| {float(mx.max(mx.abs(lk - lm))):.4f}, max |mlx| {float(mx.max(mx.abs(lm))):.2f}")


if __name__ == "__main__":
    main()
