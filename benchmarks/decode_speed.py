"""7B decode step (B=1, random bf16 weights, compute_dtype bfloat16, compiled) with the gemv kernel and with MLX's
matmuls, taking turns in one process, against the bandwidth limit; and one block's projections alone both ways.

    python benchmarks/decode_speed.py [--blocks 32] [--tokens 32] [--rounds 3] [--sweep]

Each way is timed twice: synced (every step evaluated before the next is built) and pipelined (xlstm_viz.generate's
loop: step t+1 queued on the still-lazy greedy token t before it is read).

It ends with both paths' logits over a few steps against the same model computed in float32 (compute_dtype
"float32" on the same bf16 weights): a kernel whose error is far above the MLX path's is wrong, not rounded.
`--sweep` times the projections with the kernel over its geometry (loads in flight per lane x resident blocks).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import tempfile
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xlstm_viz  # noqa: E402,F401
import mlx.core as mx  # noqa: E402
from mlx.utils import tree_flatten, tree_map  # noqa: E402

from kernel_speed import SEVEN_B, copy_bandwidth_gbs, decode_pipelined, torch_copy_gbs  # noqa: E402
from xlstm_viz.config import XLSTMConfig  # noqa: E402
from xlstm_viz.model import XLSTM, gemv_kernels, mlstm_kernels  # noqa: E402


def median_time(fn, repeats=5):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sweep(blocks=32):
    """The projections with the kernel over UNROLL x MAX_BLOCKS (module constants, restored afterwards)."""
    saved = gemv_kernels.UNROLL, gemv_kernels.MAX_BLOCKS, gemv_kernels.THREADS
    try:
        for threads in (128, 256, 512):
            for unroll in (2, 4, 8):
                for max_blocks in (132, 264, 528, 1056):
                    gemv_kernels.UNROLL, gemv_kernels.MAX_BLOCKS, gemv_kernels.THREADS = unroll, max_blocks, threads
                    try:
                        ms, gbs = projections(blocks, ways=("kernel",))["kernel"]
                    except RuntimeError as error:  # e.g. too many registers for the block size
                        print(f"sweep THREADS={threads} UNROLL={unroll} MAX_BLOCKS={max_blocks}: failed: {error}")
                        continue
                    print(f"sweep THREADS={threads} UNROLL={unroll} MAX_BLOCKS={max_blocks}: {ms:.2f} ms, "
                          f"{gbs:.0f} GB/s", flush=True)
    finally:
        gemv_kernels.UNROLL, gemv_kernels.MAX_BLOCKS, gemv_kernels.THREADS = saved
    # each group alone, both ways (which products the kernel loses on)
    for k, name in enumerate(("q|k|v|o|i|f", "gate|up", "out", "down")):
        res = projections(blocks, ways=("kernel", "mlx"), only=k)
        print(f"group {name}: kernel {res['kernel'][0]:.2f} ms ({res['kernel'][1]:.0f} GB/s), mlx "
              f"{res['mlx'][0]:.2f} ms ({res['mlx'][1]:.0f} GB/s)", flush=True)


def accuracy(model, steps, tokens=(1, 17, 300, 4000, 9, 50000, 123, 7)):
    """Max |logits - float32 logits| / max |float32 logits| over `tokens` fed one by one, per path."""
    ref_model = XLSTM(model.config, compute_dtype="float32")
    ref_model.update(model.parameters())  # the same bf16 weights, float32 activations
    ref_step = ref_model.compiled_step()

    def run(step):
        state, out = None, []
        for t in tokens:
            logits, state = step(mx.array([[t]], mx.int32), state)
            out.append(logits.astype(mx.float32))
        out = mx.concatenate(out, axis=1)
        mx.eval(out)
        return out

    ref = run(ref_step)
    scale = float(mx.max(mx.abs(ref)))
    for mode in ("kernel", "mlx"):
        os.environ[gemv_kernels.ENV] = mode
        got = run(steps[mode])
        err = float(mx.max(mx.abs(got - ref)))
        print(f"accuracy over {len(tokens)} steps, {mode}: max |bf16 - float32| {err:.4f} = {err / scale:.3f} of "
              f"max |float32 logits| {scale:.2f}", flush=True)


def graph_nodes(step, token, state) -> collections.Counter:
    """The primitives in one compiled step's graph, by kind (what MLX's CUDA backend encodes on the host per step)."""
    logits, state = step(token, state)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "step.dot")
        mx.export_to_dot(path, logits, *[a for s in state for a in s.arrays()])
        text = open(path).read()
    mx.eval(logits)
    return collections.Counter(re.findall(r'label ?="([^"]*)", shape=rectangle', text))


def projections(blocks=32, ways=("kernel", "mlx"), only=None):
    """One block's projection groups at 7B (q|k|v|o|i|f, gate|up, out, down) x blocks, each way (ms a token)."""
    D, F = 4096, 10944
    groups = [[(2048, D), (2048, D), (4096, D), (4096, D), (8, D), (8, D)], [(F, D), (F, D)], [(D, 4096)], [(D, F)]]
    groups = groups if only is None else [groups[only]]
    # Weights of their own for every block, as the model has: with one block's weights read `blocks` times, a group
    # timed alone (`only`, the sweep) re-read the same matrix back to back, and the 33.5 MB out matrix fits in the
    # H200's L2, so its GB/s was partly an L2 rate.
    ws = [[[mx.random.normal(s).astype(mx.bfloat16) * 0.01 for s in g] for g in groups] for _ in range(blocks)]
    xs = [mx.random.normal((1, g[0][1])).astype(mx.bfloat16) for g in groups]
    mx.eval(ws, xs)
    nbytes = sum(w.nbytes for b in ws for g in b for w in g)
    out = {}
    for name, fn in (("kernel", lambda x, g: gemv_kernels.fused_multi_linear(x, g)),
                     ("mlx", lambda x, g: gemv_kernels.reference(x, g))):
        if name not in ways:
            continue
        run = lambda: mx.eval([fn(x, g) for b in ws for x, g in zip(xs, b)])
        run()
        t = median_time(run)
        out[name] = (t * 1e3, nbytes / t / 1e9)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sweep", action="store_true", help="time the kernel's projections over its geometry")
    a = ap.parse_args()
    copy = torch_copy_gbs() or copy_bandwidth_gbs()
    print(f"d2d copy {copy:.0f} GB/s (read + write); MLX copy {copy_bandwidth_gbs():.0f}", flush=True)
    print(f"gemv self-check: {gemv_kernels.self_check()}", flush=True)
    for name, (ms, gbs) in projections(a.blocks).items():
        print(f"projections of {a.blocks} blocks, {name}: {ms:.2f} ms, {gbs:.0f} GB/s", flush=True)
    if a.sweep:
        sweep(a.blocks)
    model = XLSTM(XLSTMConfig.from_dict({**SEVEN_B, "num_blocks": a.blocks}), compute_dtype="bfloat16")
    model.update(tree_map(lambda p: p.astype(mx.bfloat16), model.parameters()))
    mx.eval(model.parameters())
    weight_bytes = sum(v.nbytes for k, v in tree_flatten(model.parameters()) if "embeddings" not in k)
    limit = copy * 1e9 / weight_bytes
    print(f"{weight_bytes / 1e9:.2f} GB of weights a token: limit {limit:.0f} tok/s; kernels {mlstm_kernels.warm_up()}",
          flush=True)
    token = mx.array([[1]], mx.int32)
    results = {"kernel": [], "mlx": []}
    pipelined = {"kernel": [], "mlx": []}
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
            if r == 0:
                nodes = graph_nodes(step, token, state)  # state: evaluated
                print(f"{mode}: {sum(nodes.values())} graph nodes a step; most: {nodes.most_common(8)}", flush=True)
            host = []
            t0 = time.perf_counter()
            state = decode_pipelined(step, token, state, a.tokens, host)
            tp = (time.perf_counter() - t0) / a.tokens
            results[mode].append(t)
            pipelined[mode].append(tp)
            print(f"round {r} {mode}: synced {t * 1e3:.2f} ms/token = {1 / t:.1f} tok/s, {1 / t / limit:.0%} of the "
                  f"limit; pipelined {tp * 1e3:.2f} ms/token = {1 / tp:.1f} tok/s, {1 / tp / limit:.0%} (host "
                  f"{statistics.median(host) * 1e3:.2f} ms a step) (first 3 steps {warm:.1f} s)", flush=True)
    for name, res in (("synced", results), ("pipelined", pipelined)):
        k, m = (statistics.median(res[x]) for x in ("kernel", "mlx"))
        print(f"median, {name}: gemv kernel {k * 1e3:.2f} ms ({1 / k:.1f} tok/s, {1 / k / limit:.0%}), MLX matmuls "
              f"{m * 1e3:.2f} ms ({1 / m:.1f} tok/s, {1 / m / limit:.0%}); kernel/MLX speed {m / k:.2f}x")
    accuracy(model, steps)
    # the same logits both ways
    os.environ[gemv_kernels.ENV] = "kernel"
    lk, _ = steps["kernel"](token, None)
    os.environ[gemv_kernels.ENV] = "mlx"
    lm, _ = steps["mlx"](token, None)
    print(f"logits max |kernel - mlx| {float(mx.max(mx.abs(lk - lm))):.4f}, max |mlx| {float(mx.max(mx.abs(lm))):.2f}")


if __name__ == "__main__":
    main()
