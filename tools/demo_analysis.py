"""Print the README's figures about what the demo model learned, from the shipped checkpoint.

    PYTHONPATH=. python tools/demo_analysis.py [--samples 256]

- recall at 8/16/24/32 pairs, with half of the keys queried (as trained) and with all of them;
- the same at 16 pairs with either block's `mlstm.memory -> mlstm.norm` connection disabled;
- per block and head, the mean input- and forget-gate pre-activation at context keys, context values, `?`, and
  queried keys, over 64 traced sequences of 16 pairs (`run_with_trace`, stats mode).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

import xlstm_viz  # noqa: E402
from xlstm_viz.tasks import recall_accuracy  # noqa: E402


def recall(model, pairs: int, queries: int, samples: int, seed: int) -> float:
    batch = model.task.sample(np.random.default_rng(seed), pairs, queries, batch_size=samples,
                              pad_to_multiple=model.config.chunk_size)
    logits, _ = model(mx.array(batch.input_ids))
    return recall_accuracy(np.array(logits), batch.targets, batch.loss_mask)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=256)
    args = parser.parse_args()
    model = xlstm_viz.load_demo()
    task = model.task

    print("recall (half of the keys queried / all keys queried)")
    for pairs in (8, 16, 24, 32):
        half = recall(model, pairs, pairs // 2, args.samples, seed=1)
        full = recall(model, pairs, pairs, args.samples, seed=1)
        print(f"  {pairs:2d} pairs: {half:6.1%} / {full:6.1%}")

    print("recall at 16 pairs with a block's memory -> norm connection disabled")
    for block, wiring in enumerate(model.cell_wirings):
        wiring.set_enabled(f"blocks.{block}.mlstm.memory", f"blocks.{block}.mlstm.norm", False)
        try:
            print(f"  block {block}: {recall(model, 16, 8, args.samples, seed=7):6.1%}")
        finally:
            wiring.undo()

    batch = task.sample(np.random.default_rng(1), 16, 8, batch_size=64, pad_to_multiple=model.config.chunk_size)
    trace = model.run_with_trace(mx.array(batch.input_ids), probes=["blocks.*.mlstm.igate", "blocks.*.mlstm.fgate"])
    ids = batch.input_ids
    context = np.zeros(ids.shape, dtype=bool)
    context[:, :32] = True
    is_key = (ids >= task.key_offset) & (ids < task.value_offset)
    is_value = ids >= task.value_offset
    places = {"context key": is_key & context, "context value": is_value & context,
              "?": ids == task.query_id, "queried key": is_key & ~context}
    print("mean gate pre-activation per head (i = input gate, f = forget gate), 64 sequences of 16 pairs")
    for block in range(len(model.blocks)):
        i = trace.stats[f"blocks.{block}.mlstm.igate"]["value"]
        f = trace.stats[f"blocks.{block}.mlstm.fgate"]["value"]
        for name, where in places.items():
            print(f"  block {block} {name:13s} i {np.round(i[where].mean(0), 1)}  f {np.round(f[where].mean(0), 1)}")


if __name__ == "__main__":
    main()
