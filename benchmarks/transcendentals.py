"""exp / tanh / sigmoid on MLX's CPU device: MLX's own functions, the arithmetic ones of xlstm_viz.model.activations,
and NumPy (one thread, vectorised), same process, same arrays.

    python benchmarks/transcendentals.py [--sizes 1024,4096,360448,25755648] [--official-python PATH]

360,448 = 512 x 704 (the D=256 benchmark's SwiGLU gate), 25,755,648 = 512 x 50304 (the D=1024 logits the soft cap
runs over). With `--official-python` (a venv with torch) torch's functions are timed too, in that interpreter, with
its default threads. Prints the best of 5 in ms, and ns per element.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import xlstm_viz.blas  # noqa: E402,F401  (before MLX)
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from xlstm_viz.model import activations as A  # noqa: E402

xlstm_viz.blas.tune_malloc()  # the malloc settings a model's process runs with (the first XLSTM applies them)

TORCH = """
import sys, time, torch
def best(fn):
    fn(); ts = []
    for _ in range(5):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return min(ts)
for n in map(int, sys.argv[1].split(",")):
    x = torch.randn(n) * 3
    print(n, best(lambda: torch.exp(x)), best(lambda: torch.tanh(x)), best(lambda: torch.sigmoid(x)), torch.get_num_threads())
"""


def best(fn) -> float:
    fn()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1024,4096,360448,25755648")
    parser.add_argument("--official-python", default=os.environ.get("XLSTM_OFFICIAL_PYTHON", "/work/venv-ref/bin/python"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"mlx {mx.__version__} on {mx.default_device()}; load {os.getloadavg()[0]:.2f}; ms (ns per element)")
    torch_rows = {}
    if args.official_python and Path(args.official_python).exists():
        out = subprocess.run([args.official_python, "-c", TORCH, args.sizes], capture_output=True, text=True)
        for line in out.stdout.split("\n"):
            if line.strip():
                n, *secs, threads = line.split()
                torch_rows[int(n)] = [float(s) for s in secs] + [int(threads)]
    previous = A.set_fast_cpu_math(True)
    try:
        for n in sizes:
            x = mx.random.normal((n,)) * 3
            mx.eval(x)
            xn = np.array(x)
            rows = {
                "mlx": [best(lambda f=f: mx.eval(f(x))) for f in (mx.exp, mx.tanh, mx.sigmoid)],
                "arith": [best(lambda f=f: mx.eval(f(x))) for f in (A._exp_f32, A._tanh_f32, A._sigmoid_f32)],
                "numpy": [best(lambda: np.exp(xn)), best(lambda: np.tanh(xn)), best(lambda: 1.0 / (1.0 + np.exp(-xn)))],
            }
            if n in torch_rows:
                rows[f"torch ({torch_rows[n][3]} threads)"] = torch_rows[n][:3]
            print(f"n = {n:,}")
            for name, secs in rows.items():
                cells = "  ".join(f"{op} {s * 1e3:9.3f} ({s * 1e9 / n:6.1f})" for op, s in zip(("exp", "tanh", "sigmoid"), secs))
                print(f"  {name:18s} {cells}")
    finally:
        A.set_fast_cpu_math(previous)


if __name__ == "__main__":
    main()
