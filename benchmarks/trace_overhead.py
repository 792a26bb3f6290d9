"""Cost of observing a forward pass: untraced vs stats-traced vs full-traced, in the same run.

    python benchmarks/trace_overhead.py [--model PATH] [--tokens 64] [--repeats 50] [--width D ...] [--device cpu]

Baseline ("direct"): the same block cells called in a fixed order with no executor (no wiring plan, no observer);
"untraced" is `model(ids)`: the executor with tracing off. Their ratio is the cost of having wiring-driven execution
and probes available while not using them. Every variant ends with its logits in host memory, as a trace does: on
the CPU device the first host work after an MLX evaluation was measured to cost about 0.06 ms extra (a set of 55
names took 60 us instead of 2 us; cause not pinned down), and when the untraced variant stopped its clock at
`mx.eval`, that cost landed in the next variant's time. The overhead printed is the median over rounds of the
per-round ratio. Also times the compiled decode step's re-trace after a wiring toggle.
Defaults to the bundled demo model, and also runs the `small` parity fixture when present. `--width 512 1024` adds
random-init models of those widths (4 heads, 2 blocks, vocab 1024): a stats trace costs in proportion to the
activations (S x D), the forward to its matmuls (S x D^2), so the ratio falls with width.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import xlstm_viz.blas as blas  # noqa: E402
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

import xlstm_viz  # noqa: E402
from xlstm_viz.model.activations import soft_cap  # noqa: E402
from xlstm_viz.model.cells import CellParams, linear  # noqa: E402
from xlstm_viz.model.norms import rms_norm  # noqa: E402
from xlstm_viz.wiring.block_types import CELL_TYPES  # noqa: E402

ORDER_INPUTS = {  # cell -> its inputs in the default wiring, for the executor-free baseline
    "mlstm.norm_in": ["in"], "mlstm.q": ["mlstm.norm_in"], "mlstm.k": ["mlstm.norm_in"], "mlstm.v": ["mlstm.norm_in"],
    "mlstm.igate": ["mlstm.norm_in"], "mlstm.fgate": ["mlstm.norm_in"], "mlstm.ogate": ["mlstm.norm_in"],
    "mlstm.memory": ["mlstm.q", "mlstm.k", "mlstm.v", "mlstm.igate", "mlstm.fgate"], "mlstm.norm": ["mlstm.memory"],
    "mlstm.h": ["mlstm.norm", "mlstm.ogate"], "mlstm.out": ["mlstm.h"], "mid": ["in", "mlstm.out"],
    "ffn.norm_in": ["mid"], "ffn.gate": ["ffn.norm_in"], "ffn.up": ["ffn.norm_in"], "ffn.h": ["ffn.gate", "ffn.up"],
    "ffn.out": ["ffn.h"], "out": ["mid", "ffn.out"],
}


def direct_forward(model, ids):
    x = model.backbone.embeddings(ids).astype(mx.float32)
    for j, block in enumerate(model.blocks):
        values = {"in": x}
        cells = model.cell_wirings[j].cells
        for cell, inputs in ORDER_INPUTS.items():  # each cell by its registered type's pure function
            spec = cells[f"blocks.{j}.{cell}"]
            values[cell] = CELL_TYPES[spec.cell_type].fn({k: values[k] for k in inputs}, block.param, None,
                                                         CellParams(spec.params, model.config))[0]
        x = values["out"]
    x = rms_norm(x, model.backbone.out_norm.weight, model.config.norm_eps)
    return soft_cap(linear(x, model.head_weight), model.config.output_logit_soft_cap)


def best_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * min(times)


def interleaved_times(fns, repeats, warmup=10):
    """Seconds per call of each function, [len(fns), repeats]. The functions take turns in every round, so that load
    drifts on a shared machine hit all alike; the first rounds are dropped (CPU clocks and MLX's allocator warm up)."""
    times = np.zeros((len(fns), warmup + repeats))
    for r in range(warmup + repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            times[i, r] = time.perf_counter() - t
    return times[:, warmup:]


def overhead(times, base) -> str:
    """Overhead of one variant over the baseline: the median of per-round ratios (robust to load that comes and goes
    between rounds), and the ratio of best times."""
    paired = 100 * (np.median(times / base) - 1)
    best = 100 * (times.min() / base.min() - 1)
    return f"overhead vs untraced {paired:+6.1f}% (median of rounds; best-of {best:+6.1f}%)"


def run(model, name, tokens, repeats):
    rng = np.random.default_rng(0)
    ids = mx.array(rng.integers(0, model.config.vocab_size, (1, tokens)))
    np.testing.assert_allclose(np.array(direct_forward(model, ids)), np.array(model(ids)[0]), atol=1e-5)
    direct, untraced, stats, full = interleaved_times([
        lambda: np.array(direct_forward(model, ids)),
        lambda: np.array(model(ids)[0]),
        lambda: model.run_with_trace(ids, mode="stats"),
        lambda: model.run_with_trace(ids, mode="full"),
    ], repeats)
    ms = lambda t: f"{1000 * np.median(t):8.2f} ms (best {1000 * t.min():6.2f})"
    print(f"[{name}] {tokens} tokens, {model.config.num_blocks} blocks, D={model.config.embedding_dim}")
    print(f"  direct (no executor)   {ms(direct)}")
    print(f"  untraced model(ids)    {ms(untraced)}   ratio vs direct {np.median(untraced / direct):5.2f}x")
    print(f"  stats trace (all)      {ms(stats)}   {overhead(stats, untraced)}")
    print(f"  full trace (all)       {ms(full)}   {overhead(full, untraced)}")
    step = model.compiled_step()
    tok = ids[:, :1]
    mx.eval(step(tok, None)[0])
    same = best_ms(lambda: mx.eval(step(tok, None)[0]), repeats)
    wiring = model.cell_wirings[0]
    src, dst = "blocks.0.mlstm.norm_in", "blocks.0.mlstm.q"
    times = []
    for level in (0.3, 0.5, 0.7):
        wiring.set_sparsity(src, dst, level, seed=1)
        t = time.perf_counter()
        mx.eval(step(tok, None)[0])
        times.append(1000 * (time.perf_counter() - t))
    for _ in range(3):
        wiring.undo()
    print(f"  compiled decode step   {same:8.2f} ms; first step after a sparsity toggle (re-trace) "
          f"{np.median(times):8.2f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--width", type=int, nargs="*", default=[], help="also random-init models of these widths")
    parser.add_argument("--device", choices=["default", "cpu"], default="default",
                        help="cpu: MLX's CPU device even where a GPU is present (the stats kernel path)")
    args = parser.parse_args()
    if args.device == "cpu":
        mx.set_default_device(mx.cpu)
    print(f"MLX device: {mx.default_device()}")
    print(f"{blas.describe()}; load {os.getloadavg()[0]:.2f}")
    if args.model:
        run(xlstm_viz.load_model(args.model), args.model, args.tokens, args.repeats)
        return
    run(xlstm_viz.load_demo(), "demo", args.tokens, args.repeats)
    small = ROOT / "tests" / "fixtures" / "golden" / "small"
    if small.exists():
        run(xlstm_viz.load_model(small), "golden small", args.tokens, args.repeats)
    for width in args.width:
        run(random_model(width), f"random D={width}", args.tokens, args.repeats)


def random_model(width: int):
    """The random-init model of `--width` (4 heads, 2 blocks, vocab 1024), also used by trace_phases.py."""
    config = xlstm_viz.XLSTMConfig(embedding_dim=width, num_heads=4, num_blocks=2, vocab_size=1024, chunk_size=64)
    model = xlstm_viz.XLSTM(config)
    mx.eval(model.parameters())
    return model


if __name__ == "__main__":
    main()
