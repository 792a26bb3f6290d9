"""Prefill and decode speed of our MLX model vs the official xLSTM-Large (PyTorch CPU), same machine, same run.

    python benchmarks/model_speed.py [--size d256|d1024|both] [--decode-steps 32] [--rounds 3] [--official-python PATH]

Sizes (issue 3): d256 = D=256 / 4 heads / 4 blocks / vocab 1024; d1024 = D=1024 / 8 heads / 8 blocks / vocab 50304,
chunk 64, batch 1. Prefill = one chunkwise call over 512 tokens; decode = one recurrent step per token from a state,
in xlstm_viz.generate's loop (the greedy token fed back; step n+1 queued on the device before token n is read on
the host), and "synced-decode" the same steps each evaluated before the next is built (the loop before that).
The official model runs in `--official-python` (a venv with torch + xlstm, default /work/venv-ref/bin/python) as
`benchmarks/official_model.py --worker`, on the same CPU; timing starts once the worker has finished its imports.
Rounds alternate: ours once, the official once, so that both see the same load on a shared machine; in a round each
side times one prefill and one decode, each right after an untimed one of its kind. Each round's ratio is printed,
then the best rates of each side and the median of the per-round ratios (target >= 1.5x). XLSTM_VIZ_FAST_MATH=off measures with MLX's own exp/tanh.
`--bound` also times the prefill's matrix products alone (benchmarks/prefill_gemm.py's shapes, MLX + the loaded BLAS)
and a decode step's (the same weights times one token) in each round: the official time over that is the most our
ratio can reach if everything else cost nothing (for decode: the time to read every float32 weight once a step).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import xlstm_viz.blas as blas  # noqa: E402  (before MLX)
import mlx.core as mx  # noqa: E402

from xlstm_viz.config import XLSTMConfig  # noqa: E402
from xlstm_viz.model import XLSTM, activations  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from prefill_gemm import shapes_of  # noqa: E402

SIZES = {  # names as in benchmarks/official_model.py
    "d256": dict(embedding_dim=256, num_heads=4, num_blocks=4, vocab_size=1024),
    "d1024": dict(embedding_dim=1024, num_heads=8, num_blocks=8, vocab_size=50304),
}


def prepare_ours(size: str, prefill_len: int, decode_steps: int, compiled: bool):
    """Our model, warmed up (and compiled); returns `round() -> {prefill_tok_s, decode_steps_s}` timing each once."""
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

    state = prefill()  # warm-up (and compile)
    token = ids[:, -1:]

    def decode_synced():  # each step evaluated before the next is built
        st = state
        for _ in range(decode_steps):
            logits, st = step(token, st)
            mx.eval(logits, [s.arrays() for s in st])

    def decode():
        """xlstm_viz.generate's loop: the greedy token fed back, step n+1 queued before token n is read."""
        lazy = step.lazy if compiled else step
        logits, st = step(token, state)
        y = mx.argmax(logits[:, -1, :], axis=-1).astype(mx.int32).reshape(1, 1)
        for _ in range(decode_steps - 1):
            logits, st = lazy(y, st)
            following = mx.argmax(logits[:, -1, :], axis=-1).astype(mx.int32).reshape(1, 1)
            mx.async_eval(following)
            y.item()
            y = following
        y.item()

    decode()  # warm-up (and compile)
    decode_synced()

    def one_round() -> dict:
        # Each timed call follows an untimed one of its kind, as the official worker's timings do (time_official):
        # the call before ours was the official's, whose torch threads and data have just held the cores and caches.
        prefill()
        t = time.perf_counter()
        prefill()
        t_prefill = time.perf_counter() - t
        decode()
        t = time.perf_counter()
        decode()
        t_decode = time.perf_counter() - t
        decode_synced()
        t = time.perf_counter()
        decode_synced()
        t_synced = time.perf_counter() - t
        return {"prefill_tok_s": prefill_len / t_prefill, "decode_steps_s": decode_steps / t_decode,
                "decode_synced_steps_s": decode_steps / t_synced}

    return one_round


def prepare_products(size: str, prefill_len: int, decode_steps: int):
    """`() -> (seconds, seconds)`: the prefill's matrix products alone (each evaluated on its own, as in
    prefill_gemm.py), and the same weights' products with one token (a decode step's, M = 1) for `decode_steps` steps,
    all of a step evaluated together as a compiled step is. Every weight is read once per decode step, so the second
    is about the memory-bandwidth floor of a float32 decode."""
    shapes = shapes_of(size)
    xs = {k: mx.random.normal((prefill_len, k)) for k in {s[1] for s in shapes}}
    x1 = {k: mx.random.normal((1, k)) for k in xs}
    ws = [mx.random.normal((n, k)) for n, k in shapes]
    mx.eval(xs, x1, ws)

    def products() -> tuple[float, float]:
        t = time.perf_counter()
        for (n, k), w in zip(shapes, ws):
            mx.eval(xs[k] @ w.T)
        t_prefill = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(decode_steps):
            mx.eval([x1[k] @ w.T for (n, k), w in zip(shapes, ws)])
        return t_prefill, time.perf_counter() - t

    products()
    return products


class OfficialWorker:
    """benchmarks/official_model.py --worker in the reference venv (torch is not in ours), or None if absent."""

    def __init__(self, python: str | None):
        self.proc = None
        self.started = time.perf_counter()
        if python and Path(python).exists():
            self.proc = subprocess.Popen([python, str(ROOT / "benchmarks" / "official_model.py"), "--worker"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready_after: float | None = None

    def wait_ready(self) -> str:
        """Block until the worker has imported torch and the official packages (its first line); returns a note.

        Those imports take a core for seconds (2.6 s at load 6.7 on the 2-core machine); timing our first round
        while they ran measured them too."""
        if self.proc is None or self.ready_after is not None:
            return ""
        t = time.perf_counter()
        line = self.proc.stdout.readline()
        if not line or not json.loads(line).get("ready"):
            raise RuntimeError(f"the official worker did not start: {line!r} (code {self.proc.poll()})")
        self.ready_after = time.perf_counter() - self.started
        return (f"official worker ready {self.ready_after:.1f} s after its start "
                f"(waited {time.perf_counter() - t:.1f} s for it)")

    def time(self, size: str, prefill_len: int, decode_steps: int) -> dict | None:
        if self.proc is None:
            return None
        self.proc.stdin.write(json.dumps({"size": size, "prefill_len": prefill_len, "decode_steps": decode_steps,
                                          "repeats": 1}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the official worker exited (code {self.proc.wait()})")
        return json.loads(line)

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait()


# decode: generate's pipelined loop; synced: every step evaluated before the next is built (torch on the CPU runs
# its loop that way whatever it is asked, so the official worker's one decode figure serves both rows).
KEYS = (("prefill_tok_s", "prefill tokens/s"), ("decode_steps_s", "decode steps/s"),
        ("decode_synced_steps_s", "synced-decode steps/s"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["d256", "d1024", "both"], default="both")
    parser.add_argument("--prefill-len", type=int, default=512)
    parser.add_argument("--decode-steps", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="alternating ours/official rounds (--repeats: alias)")
    parser.add_argument("--repeats", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--official-python", default=os.environ.get("XLSTM_OFFICIAL_PYTHON", "/work/venv-ref/bin/python"))
    parser.add_argument("--bound", action="store_true", help="also time the prefill's products alone each round")
    parser.add_argument("--eager", action="store_true", help="prefill and decode without mx.compile (the eager path traces/debugger use)")
    args = parser.parse_args()
    rounds = args.repeats or args.rounds
    sizes = ["d256", "d1024"] if args.size == "both" else [args.size]
    official = OfficialWorker(args.official_python)
    try:
        for i, size in enumerate(sizes):
            one_round = prepare_ours(size, args.prefill_len, args.decode_steps, compiled=not args.eager)
            products = prepare_products(size, args.prefill_len, args.decode_steps) if args.bound else None
            if i == 0:  # after the first model: it applies the malloc settings that describe() reports
                print(f"{blas.describe()}; mlx {mx.__version__}; device {mx.default_device()}; "
                      f"fast CPU math {'on' if activations.FAST_CPU_MATH else 'off'}; load {os.getloadavg()[0]:.2f}")
                note = official.wait_ready()
                if note:
                    print(note, flush=True)
            ours_rounds, official_rounds, bounds, decode_bounds = [], [], [], []
            for r in range(rounds):  # alternating, so that both sides see the same (changing) machine load
                ours_rounds.append(one_round())
                theirs = official.time(size, args.prefill_len, args.decode_steps)
                if theirs is not None:
                    theirs["decode_synced_steps_s"] = theirs["decode_steps_s"]
                    official_rounds.append(theirs)
                line = f"  round {r + 1}: load {os.getloadavg()[0]:.2f}"
                for key, label in KEYS:
                    line += f"  {label.split()[0]} ours {ours_rounds[-1][key]:.1f}"
                    if theirs is not None:
                        line += f" official {theirs[key]:.1f} ({ours_rounds[-1][key] / theirs[key]:.2f}x)"
                if products is not None:
                    t_products, t_gemv = products()
                    line += f"  products alone {t_products:.3f} s, decode's {t_gemv / args.decode_steps * 1e3:.2f} ms a step"
                    if theirs is not None:  # official seconds / our products' seconds
                        bounds.append(args.prefill_len / theirs["prefill_tok_s"] / t_products)
                        decode_bounds.append(args.decode_steps / theirs["decode_steps_s"] / t_gemv)
                        line += f" (ratio at most {bounds[-1]:.2f}x prefill, {decode_bounds[-1]:.2f}x decode)"
                print(line, flush=True)
            print(f"[{size}] {SIZES[size]}: best of {rounds} rounds; ratio = median of the per-round ratios")
            for key, label in KEYS:
                best = max(o[key] for o in ours_rounds)
                line = f"  {label:18s} ours {best:10.1f}"
                if official_rounds:
                    ratios = sorted(o[key] / t[key] for o, t in zip(ours_rounds, official_rounds))
                    line += (f"   official {max(t[key] for t in official_rounds):10.1f}   ratio "
                             f"{statistics.median(ratios):5.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f}x)")
                else:
                    line += "   official: not found (pass --official-python)"
                print(line, flush=True)
            if bounds:
                print(f"  bound: with nothing but the products, ours/official prefill would be "
                      f"{statistics.median(bounds):.2f}x (median; rounds {min(bounds):.2f}-{max(bounds):.2f}x), decode "
                      f"{statistics.median(decode_bounds):.2f}x ({min(decode_bounds):.2f}-{max(decode_bounds):.2f}x)",
                      flush=True)
    finally:
        official.close()


if __name__ == "__main__":
    main()
