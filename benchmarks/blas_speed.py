"""MLX CPU matmul speed with the BLAS xlstm_viz.blas loads vs MLX's bundled reference BLAS, same run.

    python benchmarks/blas_speed.py [--size 1024]

Each variant runs in its own process, since the BLAS is bound when MLX is first imported.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = """
import time, xlstm_viz.blas as blas, mlx.core as mx
blas.tune_malloc()  # as in a process that has built a model
n = {n}
a, b = mx.random.normal((n, n)), mx.random.normal((n, n)); mx.eval(a, b, a @ b)
t = time.perf_counter()
for _ in range(5): mx.eval(a @ b)
print((time.perf_counter() - t) / 5, blas.describe())
"""


def run(n: int, blas: str) -> tuple[float, str]:
    env = dict(os.environ, XLSTM_VIZ_BLAS=blas) if blas else dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", CHILD.format(n=n)], env=env, capture_output=True, text=True, check=True)
    seconds, label = out.stdout.strip().split(" ", 1)
    return float(seconds), label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    n = parser.parse_args().size
    base, base_label = run(n, "off")
    fast, fast_label = run(n, "")
    print(f"{n}x{n} float32 matmul: {base * 1000:.1f} ms ({base_label}) -> {fast * 1000:.1f} ms ({fast_label}); "
          f"ratio {base / fast:.1f}x")


if __name__ == "__main__":
    main()
