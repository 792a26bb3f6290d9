"""The matrix products of one prefill alone: MLX + the BLAS xlstm_viz loads vs torch (the official model's library),
alternating rounds in one run. Bounds what benchmarks/model_speed.py's prefill ratio can reach: a prefill is these
products plus everything else, so ours/official <= (torch's products + torch's rest) / (our products).

    python benchmarks/prefill_gemm.py [--size d256|d1024|both] [--rounds 3] [--official-python PATH]

Per block: q, k, v, ogate, igate, fgate, out_proj, proj_up_gate, proj_up, proj_down on [512, D]; then lm_head; the
shapes of benchmarks/model_speed.py (float32, batch 1, 512 tokens). Prints each round's seconds and the best.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import xlstm_viz.blas as blas  # noqa: E402  (before MLX)
import mlx.core as mx  # noqa: E402

from xlstm_viz.config import XLSTMConfig  # noqa: E402

blas.tune_malloc()  # the malloc settings a model's process runs with (the first XLSTM applies them)

SIZES = {
    "d256": dict(embedding_dim=256, num_heads=4, num_blocks=4, vocab_size=1024),
    "d1024": dict(embedding_dim=1024, num_heads=8, num_blocks=8, vocab_size=50304),
}

TORCH = """
import json, sys, time, torch
shapes, tokens = json.loads(sys.argv[1]), int(sys.argv[2])
xs = {k: torch.randn(tokens, k) for k in {s[1] for s in shapes}}
ws = [torch.randn(n, k) for n, k in shapes]
def run():
    for (n, k), w in zip(shapes, ws):
        xs[k] @ w.T
with torch.inference_mode():
    run()
    for line in sys.stdin:
        t = time.perf_counter(); run(); print(time.perf_counter() - t, flush=True)
"""


def shapes_of(size: str) -> list[tuple[int, int]]:
    c = XLSTMConfig(**SIZES[size])
    D, nh = c.embedding_dim, c.num_heads
    block = [(c.qk_dim, D), (c.qk_dim, D), (c.v_dim, D), (c.v_dim, D), (nh, D), (nh, D), (D, c.v_dim),
             (c.ffn_dim, D), (c.ffn_dim, D), (D, c.ffn_dim)]
    return block * c.num_blocks + [(c.vocab_size, D)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["d256", "d1024", "both"], default="both")
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--official-python", default=os.environ.get("XLSTM_OFFICIAL_PYTHON", "/work/venv-ref/bin/python"))
    args = parser.parse_args()
    print(f"{blas.describe()}; mlx {mx.__version__}; load {os.getloadavg()[0]:.2f}")
    for size in (["d256", "d1024"] if args.size == "both" else [args.size]):
        shapes = shapes_of(size)
        flops = sum(2 * args.tokens * n * k for n, k in shapes)
        xs = {k: mx.random.normal((args.tokens, k)) for k in {s[1] for s in shapes}}
        ws = [mx.random.normal((n, k)) for n, k in shapes]
        mx.eval(xs, ws)

        def ours() -> float:
            t = time.perf_counter()
            for (n, k), w in zip(shapes, ws):
                mx.eval(xs[k] @ w.T)
            return time.perf_counter() - t

        ours()
        torch_proc = None
        if args.official_python and Path(args.official_python).exists():
            torch_proc = subprocess.Popen([args.official_python, "-c", TORCH, json.dumps(shapes), str(args.tokens)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        mine, theirs = [], []
        try:
            for r in range(args.rounds):
                mine.append(ours())
                line = f"  round {r + 1}: load {os.getloadavg()[0]:.2f}  MLX {mine[-1]:.3f} s"
                if torch_proc is not None:
                    torch_proc.stdin.write("go\n")
                    torch_proc.stdin.flush()
                    theirs.append(float(torch_proc.stdout.readline()))
                    line += f"  torch {theirs[-1]:.3f} s"
                print(line, flush=True)
        finally:
            if torch_proc is not None:
                torch_proc.stdin.close()
                torch_proc.wait()
        line = (f"[{size}] {len(shapes)} products, {flops / 1e9:.1f} GFLOP: MLX best {min(mine):.3f} s "
                f"({flops / min(mine) / 1e9:.0f} GFLOP/s, at most {args.tokens / min(mine):.0f} tokens/s)")
        if theirs:
            line += (f"; torch best {min(theirs):.3f} s ({flops / min(theirs) / 1e9:.0f} GFLOP/s, at most "
                     f"{args.tokens / min(theirs):.0f} tokens/s)")
        print(line, flush=True)


if __name__ == "__main__":
    main()
