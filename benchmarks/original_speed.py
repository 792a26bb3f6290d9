"""Speed of the original xLSTM (an xLSTMLMModel config, loaded as the registry XLSTM) on a random mixed stack: chunkwise vs recurrent, traced vs not.

    python benchmarks/original_speed.py [--dim 256] [--blocks 4] [--tokens 256]

Ratios are against the chunkwise call of the same run (the sLSTM blocks are sequential in both modes).
"""

from __future__ import annotations

import argparse
import time

import xlstm_viz  # noqa: F401  (binds the fast BLAS before MLX loads)
import mlx.core as mx
import numpy as np

from xlstm_viz.model.convert import registry_model
from xlstm_viz.model.forward import Executor
from xlstm_viz.model.xlstm_original import OriginalConfig


class _Collect:  # an observer that keeps every cell's output
    stepping = False

    def __init__(self):
        self.seen = []

    def wants_memory_trace(self, block):
        return False

    def on_cell(self, event):
        self.seen.append(event.output)


def random_model(dim: int, blocks: int, vocab: int = 512):
    config = OriginalConfig.from_dict({
        "vocab_size": vocab, "embedding_dim": dim, "num_blocks": blocks, "slstm_at": list(range(1, blocks, 2)),
        "mlstm_block": {"mlstm": {"num_heads": 4}},
        "slstm_block": {"slstm": {"num_heads": 4, "backend": "vanilla"}, "feedforward": {"proj_factor": 1.3}},
    })
    rng = np.random.default_rng(0)
    weights = {k: mx.array(rng.normal(0, 1 / np.sqrt(s[-1]), s).astype(np.float32))
               for k, s in config.checkpoint_shapes().items()}
    return registry_model(config, weights)


def timed(fn, repeat: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=256)
    args = ap.parse_args()
    model = random_model(args.dim, args.blocks)
    ids = mx.array(np.random.default_rng(1).integers(0, model.config.vocab_size, (1, args.tokens)))

    def run(mode, observe=False):
        collect = _Collect() if observe else None
        logits, state = Executor(model).forward_observed(ids, mode=mode, observer=collect)
        mx.eval(logits, collect.seen if observe else [])

    base = timed(lambda: run("chunkwise"))
    print(f"{model.summary()}, {args.tokens} tokens")
    for label, fn in (("chunkwise", lambda: run("chunkwise")), ("recurrent", lambda: run("recurrent")),
                      ("chunkwise + observer", lambda: run("chunkwise", True))):
        t = timed(fn) if label != "chunkwise" else base
        print(f"  {label:22s} {args.tokens / t:9.0f} tok/s   {t / base:5.2f}x chunkwise")


if __name__ == "__main__":
    main()
