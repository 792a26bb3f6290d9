"""Where a stats trace's time goes, phase by phase, against the untraced forward (medians over rounds).

    python benchmarks/trace_phases.py [--model PATH | --width D] [--tokens 64] [--rounds 200] [--device cpu]

Phases of `run_with_trace` (stats mode, all probes): recorder set-up, building the traced graph, the recorder's work
before evaluation, the evaluation itself, the host work after it (reductions, memory norms, assembly), and the tail.
Two variants split the evaluation's extra cost: the trace without the memory and input-gate probes (no memory norms),
and the traced forward that only evaluates the held probe outputs (no stats at all). It times `mx.eval` by wrapping
it inside `xlstm_viz.execution.trace`, so run it on its own, not inside a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xlstm_viz  # noqa: E402  (binds OpenBLAS before MLX)
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from xlstm_viz.execution import trace as trace_module  # noqa: E402
from xlstm_viz.execution.executor import Executor  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--width", type=int, default=None,
                        help="a random-init model of this width instead (4 heads, 2 blocks, vocab 1024, as trace_overhead)")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--device", choices=["default", "cpu"], default="default")
    args = parser.parse_args()
    if args.device == "cpu":
        mx.set_default_device(mx.cpu)
    if args.width:
        from trace_overhead import random_model  # this folder is on sys.path when a benchmark runs as a script

        model = random_model(args.width)
    else:
        model = xlstm_viz.load_model(args.model) if args.model else xlstm_viz.load_demo()
    ids = mx.array(np.random.default_rng(0).integers(0, model.config.vocab_size, (1, args.tokens)))
    times: dict[str, list[float]] = {}
    add = lambda key, seconds: times.setdefault(key, []).append(seconds)
    real_eval, seen = mx.eval, {}

    def timed_eval(*arrays):
        seen["start"] = time.perf_counter()
        real_eval(*arrays)
        seen["end"] = time.perf_counter()

    def traced(probes=None, key=None):
        t0 = time.perf_counter()
        recorder = trace_module.Recorder(model, probes, "stats")  # as run_with_trace
        t1 = time.perf_counter()
        logits, _ = Executor(model).forward_observed(ids, observer=recorder)
        t2 = time.perf_counter()
        trace_module.mx.eval = timed_eval
        try:
            recorder.finish()
        finally:
            trace_module.mx.eval = real_eval
        t3 = time.perf_counter()
        np.array(logits)
        t4 = time.perf_counter()
        if key is None:
            for name, seconds in (("1 recorder set-up", t1 - t0), ("2 build traced graph", t2 - t1),
                                  ("3 recorder before eval", seen["start"] - t2), ("4 eval", seen["end"] - seen["start"]),
                                  ("5 host work after eval", t3 - seen["end"]), ("6 tail", t4 - t3)):
                add(name, seconds)
        add(key or "T stats trace", t4 - t0)

    def held_only():
        t0 = time.perf_counter()
        recorder = trace_module.Recorder(model, None, "stats")
        logits, _ = Executor(model).forward_observed(ids, observer=recorder)
        held = [a for parts in recorder._outputs.values() for a in parts]
        held += [a for record in recorder._memory.values() for parts in record.values() for a in parts or ()]
        mx.eval(logits, held)
        np.array(logits)
        add("H held outputs, no stats", time.perf_counter() - t0)

    def untraced():
        t0 = time.perf_counter()
        logits = model(ids)[0]
        t1 = time.perf_counter()
        mx.eval(logits)
        t2 = time.perf_counter()
        np.array(logits)
        add("U build", t1 - t0)
        add("U eval", t2 - t1)
        add("U untraced forward", time.perf_counter() - t0)

    without_memory = [n for n in model.probe_names() if not n.endswith(("mlstm.memory", "mlstm.igate"))]
    warmup = 20
    for _ in range(warmup + args.rounds):
        untraced()
        traced()
        traced(without_memory, "N stats trace without memory/igate probes")
        held_only()
    print(f"{model.config.num_blocks} blocks, D={model.config.embedding_dim}, {args.tokens} tokens, "
          f"device {mx.default_device()}; median ms over {args.rounds} rounds")
    base = np.median(times["U untraced forward"][warmup:])
    for key in sorted(times):
        ms = 1000 * np.median(times[key][warmup:])
        extra = f"   {100 * (ms / (1000 * base) - 1):+6.1f}% vs untraced" if key[0] in "TNH" else ""
        print(f"  {key:44s} {ms:8.3f}{extra}")


if __name__ == "__main__":
    main()
