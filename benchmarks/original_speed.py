"""Speed of the original xLSTM (OriginalXLSTM) on a random mixed stack: chunkwise vs recurrent, traced vs not.

    python benchmarks/original_speed.py [--dim 256] [--blocks 4] [--tokens 256]

Ratios are against the chunkwise call of the same run (the sLSTM blocks are sequential in both modes).
"""

from __future__ import annotations

import argparse
import time

import xlstm_viz  # noqa: F401  (binds the fast BLAS before MLX loads)
import mlx.core as mx
import numpy as np

from xlstm_viz.model.xlstm_original import OriginalConfig, OriginalXLSTM


def random_model(dim: int, blocks: int, vocab: int = 512) -> OriginalXLSTM:
    config = OriginalConfig.from_dict({
        "vocab_size": vocab, "embedding_dim": dim, "num_blocks": blocks, "slstm_at": list(range(1, blocks, 2)),
        "mlstm_block": {"mlstm": {"num_heads": 4}},
        "slstm_block": {"slstm": {"num_heads": 4, "backend": "vanilla"}, "feedforward": {"proj_factor": 1.3}},
    })
    rng = np.random.default_rng(0)
    weights = {k: mx.array(rng.normal(0, 1 / np.sqrt(s[-1]), s).astype(np.float32))
               for k, s in config.checkpoint_shapes().items()}
    return OriginalXLSTM(config, weights)


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
        seen = []
        logits, state = model(ids, mode=mode, observer=(lambda n, v: seen.append(v)) if observe else None)
        mx.eval(logits, seen)

    base = timed(lambda: run("chunkwise"))
    print(f"{model.summary()}, {args.tokens} tokens")
    for label, fn in (("chunkwise", lambda: run("chunkwise")), ("recurrent", lambda: run("recurrent")),
                      ("chunkwise + observer", lambda: run("chunkwise", True))):
        t = timed(fn) if label != "chunkwise" else base
        print(f"  {label:22s} {args.tokens / t:9.0f} tok/s   {t / base:5.2f}x chunkwise")


if __name__ == "__main__":
    main()
