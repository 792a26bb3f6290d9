"""Forward and forward+backward time of our CfC/LTC vs ncps.torch 1.0.1, same CPU, same run, same weights' shapes.

    python benchmarks/neuron_speed.py [--official-python /work/venv-ref/bin/python] [--batch 32] [--seq 64]

The official modules run in a subprocess of the interpreter that has torch and ncps (this file with `--official`),
one after the other with ours, on the same shapes. Prints milliseconds per call (best of the repeats) and the
ratio official/ours (> 1: ours is faster). No timestamps in tests: this is where speed is measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {  # name: (class, units or wiring spec, kwargs)
    "CfC AutoNCP(28,4)": ("CfC", ["AutoNCP", [28, 4]], {}),
    "CfC 64 units": ("CfC", 64, {}),
    "LTC AutoNCP(28,4)": ("LTC", ["AutoNCP", [28, 4]], {}),
    "LTC 32 units": ("LTC", 32, {}),
}
INPUT = 8


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


def ours(batch: int, seq: int, repeats: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import xlstm_viz  # noqa: F401  (fast BLAS before MLX)
    import mlx.core as mx
    import mlx.nn as nn

    from xlstm_viz import wiring as xw
    from xlstm_viz.neurons import CfC, LTC

    out = {}
    x = mx.random.normal((batch, seq, INPUT), key=mx.random.key(0))
    for name, (cls, units, kwargs) in MODELS.items():
        if isinstance(units, list):
            units = getattr(xw, units[0])(*units[1])
        model = {"CfC": CfC, "LTC": LTC}[cls](INPUT, units, **kwargs)
        model.eval()
        loss = lambda m: mx.sum(m(x)[0] ** 2)
        grad = nn.value_and_grad(model, loss)
        out[name] = {
            "forward": best_of(lambda: mx.eval(model(x)[0]), repeats),
            "forward+backward": best_of(lambda: mx.eval(grad(model)), repeats),
        }
    return out


def official(batch: int, seq: int, repeats: int) -> dict:
    import ncps.torch as nt
    import ncps.wirings as nw
    import torch

    out = {}
    x = torch.randn(batch, seq, INPUT)
    for name, (cls, units, kwargs) in MODELS.items():
        if isinstance(units, list):
            units = getattr(nw, units[0])(*units[1])
        model = getattr(nt, cls)(INPUT, units, **kwargs)
        model.eval()

        def forward():
            with torch.no_grad():
                model(x)

        def backward():
            model.zero_grad()
            (model(x)[0] ** 2).sum().backward()

        out[name] = {"forward": best_of(forward, repeats), "forward+backward": best_of(backward, repeats)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official-python", default="/work/venv-ref/bin/python")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=15)  # fewer lets load noise decide the ratio
    ap.add_argument("--official", action="store_true", help=argparse.SUPPRESS)  # the subprocess side
    args = ap.parse_args()
    if args.official:
        print(json.dumps(official(args.batch, args.seq, args.repeats)))
        return
    mine = ours(args.batch, args.seq, args.repeats)
    cmd = [args.official_python, __file__, "--official", "--batch", str(args.batch), "--seq", str(args.seq),
           "--repeats", str(args.repeats)]
    theirs = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
    print(f"B={args.batch} S={args.seq} input={INPUT}, ms per call (best of {args.repeats}), ratio = official / ours")
    print(f"{'model':22s} {'pass':17s} {'ours':>9s} {'ncps':>9s} {'ratio':>7s}")
    for name in MODELS:
        for kind in ("forward", "forward+backward"):
            a, b = mine[name][kind], theirs[name][kind]
            print(f"{name:22s} {kind:17s} {a:9.2f} {b:9.2f} {b / a:6.2f}x")


if __name__ == "__main__":
    main()
