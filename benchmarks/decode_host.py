"""Host work of one compiled decode step, outside its graph: `model.compiled_step()` against the graph it calls.

    python benchmarks/decode_host.py [--blocks 32] [--width 64] [--steps 200] [--rounds 5] [--device cpu|default]

A random model with 32 blocks (as at 7B) at a small width, on the CPU device unless --device default (a GPU: there
the mLSTM step is the fused kernel, one graph node, where the CPU runs the pure-MLX step's ~25). Neither variant evaluates: both call
on the same evaluated state and drop the lazy outputs, so nothing is computed and what is timed is the host work of
one call: for step() the token and state checks, the state's flattening and the compiled function's own call, for
the graph only the latter. Both take turns in every round; the figure is the median over rounds. On an H200 a 7B step took 15.7-17 ms of which 4.9 ms were matmuls (README), so
every 0.1 ms of host work per step is ~0.6% of the step there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xlstm_viz  # noqa: E402,F401  (binds OpenBLAS before MLX)
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from xlstm_viz.config import XLSTMConfig  # noqa: E402
from xlstm_viz.model import XLSTM  # noqa: E402
from xlstm_viz.model.forward import Executor, state_arrays  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=32)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--device", choices=["cpu", "default"], default="cpu")
    a = ap.parse_args()
    if a.device == "cpu":
        mx.set_default_device(mx.cpu)
    config = XLSTMConfig.from_dict(dict(embedding_dim=a.width, num_heads=8, num_blocks=a.blocks, vocab_size=256,
                                        chunk_size=16))
    model = XLSTM(config)
    step = model.compiled_step()
    token = mx.array([[1]], mx.int32)
    _, state = step(token, None)
    mx.eval([s.arrays() for s in state])
    graph = step.graph  # the mx.compile'd function step() calls: (token, flat state) -> (logits, flat state)
    flat0 = [x for s in state for x in state_arrays(s)]

    def via_step():
        for _ in range(a.steps):
            step(token, state)

    def via_step_rebuilding_zeros():  # what step() did before it kept each batch size's zero state
        for _ in range(a.steps):
            Executor(model).check_state(state, 1)
            step(token, state)

    def via_graph():
        for _ in range(a.steps):
            graph(token, flat0)

    rows = []
    for _ in range(a.rounds):
        t = []
        for fn in (via_step, via_step_rebuilding_zeros, via_graph):
            t0 = time.perf_counter()
            fn()
            t.append((time.perf_counter() - t0) / a.steps)
        rows.append(t)
    rows = np.array(rows)
    # Nodes of the graph one step evaluates (mx.export_to_dot's primitive nodes): each costs host work at evaluation,
    # which is what bounds a 7B step on a GPU (README: ~11 ms of a ~16 ms step besides the matmuls).
    import collections
    import re
    import tempfile
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = graph(token, flat0)
        path = Path(tmp) / "compiled.dot"
        mx.export_to_dot(str(path), out[0], *out[1])
        prims = [x for x in re.findall(r'label ="([A-Za-z]+)', path.read_text()) if x[0].isupper()]
        counts["compiled"] = (len(prims), collections.Counter(prims).most_common(8))
    for name, (n, common) in counts.items():
        print(f"{name} step graph: {n} primitive nodes ({n / a.blocks:.0f} per block); most common: "
              + ", ".join(f"{k} {v}" for k, v in common))
    s, old, g = np.median(rows, axis=0)
    print(f"{a.blocks} blocks, D={a.width}, {mx.default_device()}, median of {a.rounds} rounds: step() {s * 1e6:.0f} us a call, "
          f"its compiled graph's call alone {g * 1e6:.0f} us, host work around it {np.median(rows[:, 0] - rows[:, 2]) * 1e6:.0f} us; "
          f"with the zero states rebuilt every step (before) {np.median(rows[:, 1] - rows[:, 2]) * 1e6:.0f} us")


if __name__ == "__main__":
    main()
