"""What a stats trace of the 7B shapes moves, counted from the Recorder's real layout (no GPU needed).

    python benchmarks/trace_bytes.py [--tokens 2048] [--blocks 32]

Runs one block at 7B width (D=4096, 8 heads, vocab 50304, bf16 compute) for 16 tokens on the CPU device with the
compiled MLX table (`stats_on="mlx"`, the same layout the fused CUDA launch gets), and scales the per-token, per-block
counts to --blocks and --tokens: the probe numbers read (the fused CUDA launch reads bf16 as it is; until issue 16's
third session `stats_gpu.prepare` widened them to float32 copies first), the stats rows written, and the raw numbers
(gate values, and the logits, which the trace no longer copies: they stay on the device until read). This is an account, not a timing: it says which terms can be the GPU trace's
~350 ms of fixed work (README) and which cannot. The final norm's probe is counted as a block's (it is one 4096-wide
entry among a block's ~90k numbers per token: an over-count of the numbers read of about 4% at 32 blocks).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xlstm_viz  # noqa: E402,F401
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.kernel_speed import SEVEN_B  # noqa: E402
from xlstm_viz.config import XLSTMConfig  # noqa: E402
from xlstm_viz.execution import trace as trace_module  # noqa: E402
from xlstm_viz.model import XLSTM  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--blocks", type=int, default=32)
    a = ap.parse_args()
    mx.set_default_device(mx.cpu)
    config = XLSTMConfig.from_dict({**SEVEN_B, "num_blocks": 1})
    model = XLSTM(config, compute_dtype="bfloat16")
    S = 16
    ids = mx.array(np.random.default_rng(0).integers(0, config.vocab_size, (1, S)), mx.int32)
    seen = {}
    table = trace_module.stats_table

    def spy(layout):
        seen["layout"] = layout
        return table(layout)

    trace_module.stats_table = spy
    try:
        recorder = trace_module.Recorder(model, None, "stats", stats_on="mlx")
        logits, _ = trace_module.Executor(model).forward_observed(ids, mode="chunkwise", observer=recorder)
        recorder.finish(logits)
    finally:
        trace_module.stats_table = table
    V = config.vocab_size
    # per token: entries of the model's tail (final norm's probe, logits probe, the logits' raw copy) appear once
    layout = seen["layout"]
    per_token = {"read": 0.0, "rows": 0.0, "raw": 0.0}
    tail = {"read": 0.0, "rows": 0.0, "raw": 0.0}
    for j, (features, heads, kind) in enumerate(layout):
        once = features == V  # the logits' probe is per model, not per block
        target = tail if once else per_token
        target["read"] += features
        target["rows" if kind else "raw"] += heads if kind else features
    T, nb = a.tokens, a.blocks
    read = T * (nb * per_token["read"] + tail["read"])
    rows = T * (nb * per_token["rows"] + tail["rows"])
    raw = T * (nb * per_token["raw"] + tail["raw"])
    print(f"7B shapes, {nb} blocks, {T} tokens, bf16 compute: {len(layout)} table entries for 1 block")
    print(f"  probe numbers read: {read / 1e9:.2f} G = {2 * read / 1e9:.1f} GB as bf16, read as they are (before issue "
          f"16's third session they were widened first: {4 * read / 1e9:.1f} GB of float32 copies written, then read)")
    print(f"  stats rows written: {rows / 1e6:.2f} M x 4 stats = {16 * rows / 1e6:.0f} MB")
    print(f"  raw numbers copied: {raw / 1e6:.1f} M = {4 * raw / 1e6:.0f} MB (gate values, memory norms)")
    print(f"  to the host in one copy: {(16 * rows + 4 * raw) / 1e6:.0f} MB; the logits ({4 * T * V / 1e6:.0f} MB as "
          f"float32) stay on the device until the trace's logits are read")


if __name__ == "__main__":
    main()
