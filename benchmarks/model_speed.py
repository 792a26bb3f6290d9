"""Prefill and decode speed of our MLX model vs the official xLSTM-Large (PyTorch CPU), same machine, same run.

    python benchmarks/model_speed.py [--size d256|d1024|both] [--decode-steps 32] [--official-python PATH]

Sizes (issue 3): d256 = D=256 / 4 heads / 4 blocks / vocab 1024; d1024 = D=1024 / 8 heads / 8 blocks / vocab 50304,
chunk 64, batch 1. Prefill = one chunkwise call over 512 tokens; decode = one recurrent step per token from a state.
The official model runs in-process when torch + xlstm import, else through `--official-python` (a venv that has
them, e.g. /work/venv-ref/bin/python) as a subprocess of benchmarks/official_model.py on the same CPU.
Prints tokens/s and the ratio ours/official (target >= 1.5x).
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
from xlstm_viz.model import XLSTM  # noqa: E402

SIZES = {  # names as in benchmarks/official_model.py
    "d256": dict(embedding_dim=256, num_heads=4, num_blocks=4, vocab_size=1024),
    "d1024": dict(embedding_dim=1024, num_heads=8, num_blocks=8, vocab_size=50304),
}


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def time_ours(size: str, prefill_len: int, decode_steps: int, repeats: int, compiled: bool) -> dict:
    config = XLSTMConfig(**SIZES[size], chunk_size=64)
    model = XLSTM(config)
    mx.eval(model.parameters())
    ids = mx.random.randint(0, config.vocab_size, (1, prefill_len))
    step = model.compiled_step() if compiled else (lambda tok, st: model(tok, state=st, mode="recurrent"))

    forward = model.compiled("chunkwise") if compiled else (lambda x, st: model(x, state=st, mode="chunkwise"))

    def prefill():
        logits, state = forward(ids, None)
        mx.eval(logits, [s.arrays() for s in state])
        return state

    state = prefill()  # warm-up
    prefill_s = best_of(prefill, repeats)
    token = ids[:, -1:]

    def decode():
        st = state
        for _ in range(decode_steps):
            logits, st = step(token, st)
            mx.eval(logits, [s.arrays() for s in st])

    decode()  # warm-up (and compile)
    decode_s = best_of(decode, repeats)
    return {"prefill_tok_s": prefill_len / prefill_s, "decode_steps_s": decode_steps / decode_s}


def time_official(size: str, prefill_len: int, decode_steps: int, python: str | None) -> dict | None:
    try:
        import torch  # noqa: F401
        import xlstm  # noqa: F401

        sys.path.insert(0, str(ROOT / "benchmarks"))
        import official_model as om

        model = om.build_official(om.BENCHMARK_SIZES[size], seed=0)
        return om.time_official(model, batch=1, prefill_len=prefill_len, decode_steps=decode_steps)
    except ImportError:
        pass
    if not python or not Path(python).exists():
        return None
    cmd = [python, str(ROOT / "benchmarks" / "official_model.py"), "--size", size, "--json",
           "--prefill-len", str(prefill_len), "--decode-steps", str(decode_steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])[size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["d256", "d1024", "both"], default="both")
    parser.add_argument("--prefill-len", type=int, default=512)
    parser.add_argument("--decode-steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--official-python", default=os.environ.get("XLSTM_OFFICIAL_PYTHON", "/work/venv-ref/bin/python"))
    parser.add_argument("--eager", action="store_true", help="prefill and decode without mx.compile (the eager path traces/debugger use)")
    args = parser.parse_args()
    print(f"{blas.describe()}; mlx {mx.__version__}; device {mx.default_device()}; load {os.getloadavg()[0]:.2f}")
    sizes = ["d256", "d1024"] if args.size == "both" else [args.size]
    for size in sizes:
        ours = time_ours(size, args.prefill_len, args.decode_steps, args.repeats, compiled=not args.eager)
        official = time_official(size, args.prefill_len, args.decode_steps, args.official_python)
        print(f"[{size}] {SIZES[size]}")
        for key, label in (("prefill_tok_s", "prefill tokens/s"), ("decode_steps_s", "decode steps/s")):
            line = f"  {label:18s} ours {ours[key]:10.1f}"
            if official:
                line += f"   official {official[key]:10.1f}   ratio {ours[key] / official[key]:5.2f}x"
            else:
                line += "   official: not importable (pass --official-python)"
            print(line)


if __name__ == "__main__":
    main()
