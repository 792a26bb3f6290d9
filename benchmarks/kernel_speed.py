"""Decode-step speed of the mLSTM cell at xLSTM-7B sizes: fused kernel vs the pure-MLX step, and the official
triton step kernel (mlstm_kernels, PyTorch) where it imports and a CUDA GPU runs, in the same run.

    python benchmarks/kernel_speed.py [--blocks 32] [--tokens 200] [--batch 1] [--peak-gbs 4800]

One token = the cell's recurrent step in each of --blocks blocks (NH=8, DQK=256, DV=512, float32 states; q, k, v
bf16). The floor is the bytes each step must move: C read and written (float32), n read and written, q, k, v read,
h written; the bandwidth ratio is (bytes / measured time) / --peak-gbs (H200 datasheet 4.8 TB/s by default).
The cell only: projections, norms and the rest of a block are not in these numbers.

Measured 2026-12-01 on one H200 (mlx-cuda 0.32.4, torch 2.11, triton 3.6, mlstm_kernels 2.0.6), 32 blocks:
  B=1:  pure MLX 9175 us/token, fused 1015 us (9.0x), triton 2096 us (fused 2.06x); a second run 9903 / 1621 / 4032
        (6.1x, 2.49x). At B=1 every path is launch-bound (fused: 32 launches, ~30 us each; floor 56 us): 6% of peak.
  B=64: pure MLX 30024 us, fused 8026 us (3.7x, 45% of 4.8 TB/s), triton 5040 us (71%): the fused kernel is 0.63x
        triton once the step is bandwidth-bound; its per-thread serial loop over DQK/8 rows is the next thing to fix.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xlstm_viz.blas  # noqa: E402,F401  (before MLX: it picks the BLAS)
import mlx.core as mx  # noqa: E402

from xlstm_viz.model import mlstm_cell, mlstm_kernels  # noqa: E402
from xlstm_viz.model.mlstm_cell import MLSTMState  # noqa: E402

NH, DQK, DV = 8, 256, 512


def step_bytes(batch: int) -> int:
    per_head = 2 * 4 * DQK * DV + 2 * 4 * DQK + 2 * (2 * DQK + DV) + 4 * DV + 4 * 4
    return batch * NH * per_head


def time_mlx(step, blocks, tokens, batch, repeats=5):
    ks = mx.random.split(mx.random.key(0), 8)
    states = [MLSTMState(mx.random.normal((batch, NH, DQK, DV), key=ks[0]) * 0.1,
                         mx.random.normal((batch, NH, DQK), key=ks[1]) * 0.1, mx.zeros((batch, NH, 1)))
              for _ in range(blocks)]
    q, k = (mx.random.normal((batch, NH, DQK), key=x).astype(mx.bfloat16) for x in ks[2:4])
    v = mx.random.normal((batch, NH, DV), key=ks[4]).astype(mx.bfloat16)
    i, f = (mx.random.normal((batch, NH, 1), key=x).astype(mx.bfloat16) for x in ks[5:7])
    mx.eval(states, q, k, v, i, f)

    def run(n):
        nonlocal states
        for _ in range(n):
            hs = []
            for b in range(blocks):
                h, states[b] = step(q, k, v, i, f, states[b], 1e-6)
                hs.append(h)
            mx.eval(hs, [s.arrays() for s in states])  # one token, as a decode loop evaluates it
    run(3)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(tokens)
        times.append((time.perf_counter() - t0) / tokens)
    return statistics.median(times)


def time_triton(blocks, tokens, batch, repeats=5):
    try:
        import torch
        from mlstm_kernels.torch.recurrent.triton_step import mlstm_recurrent_step__triton
    except Exception as error:  # noqa: BLE001
        return None, f"{type(error).__name__}: {error}"
    if not torch.cuda.is_available():
        return None, "torch sees no CUDA GPU"
    dev = "cuda"
    states = [(torch.randn(batch, NH, DQK, DV, device=dev) * 0.1, torch.randn(batch, NH, DQK, device=dev) * 0.1,
               torch.zeros(batch, NH, 1, device=dev)) for _ in range(blocks)]
    q, k = (torch.randn(batch, NH, DQK, device=dev, dtype=torch.bfloat16) for _ in range(2))
    v = torch.randn(batch, NH, DV, device=dev, dtype=torch.bfloat16)
    i, f = (torch.randn(batch, NH, 1, device=dev, dtype=torch.bfloat16) for _ in range(2))

    def run(n):
        for _ in range(n):
            for b in range(blocks):
                c, nn, m = states[b]
                h, states[b] = mlstm_recurrent_step__triton(q, k, v, i, f, c, nn, m, eps=1e-6)
            torch.cuda.synchronize()
    run(3)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(tokens)
        times.append((time.perf_counter() - t0) / tokens)
    return statistics.median(times), "ok"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--peak-gbs", type=float, default=4800.0)
    a = ap.parse_args()
    which = mlstm_kernels.backend()
    print(f"device {mx.default_device()}, kernel backend {which}, B={a.batch} NH={NH} DQK={DQK} DV={DV} "
          f"blocks={a.blocks} tokens={a.tokens}")
    floor_bytes = step_bytes(a.batch) * a.blocks
    rows = {"pure MLX step": time_mlx(mlstm_cell.recurrent_step, a.blocks, a.tokens, a.batch)}
    if which is not None:
        rows["fused kernel"] = time_mlx(lambda *x: mlstm_kernels.fused_step(*x, which=which), a.blocks, a.tokens,
                                        a.batch)
    t, why = time_triton(a.blocks, a.tokens, a.batch)
    if t is not None:
        rows["official triton step"] = t
    else:
        print(f"official triton step: not run ({why})")
    print(f"bytes per token (floor): {floor_bytes / 1e6:.1f} MB -> {floor_bytes / (a.peak_gbs * 1e9) * 1e6:.1f} us "
          f"at {a.peak_gbs:.0f} GB/s")
    print(f"{'path':24s} {'us/token':>10s} {'tokens/s':>10s} {'GB/s':>8s} {'of peak':>8s}")
    for name, sec in rows.items():
        gbs = floor_bytes / sec / 1e9
        print(f"{name:24s} {sec * 1e6:10.1f} {1 / sec:10.1f} {gbs:8.0f} {gbs / a.peak_gbs:8.2f}")
    if "fused kernel" in rows:
        for other in ("pure MLX step", "official triton step"):
            if other in rows:
                print(f"fused kernel speed-up over {other}: {rows[other] / rows['fused kernel']:.2f}x")


if __name__ == "__main__":
    main()
