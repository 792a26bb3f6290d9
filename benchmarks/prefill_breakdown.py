"""Where a 7B prefill's time goes on a GPU, and what the chunkwise memory cell's variants cost.

    python benchmarks/prefill_breakdown.py [--blocks 32] [--lengths 2048,8192] [--rounds 5]

Three measurements, each over the same random bf16 7B-shaped model (compute_dtype="bfloat16"):
1. The compiled prefill with the chunk-state scan storing C_in in bf16 (the default: q C_in takes bf16 operands)
   against the same scan storing float32 C_in that MLX then rounds (the earlier code), taking turns in every round.
2. One block's compiled memory cell at chunk lengths 64, 128 and 256 (`--chunk-lengths`; the same function, rounded
   differently; the 7B config uses 64), with and without a stats trace's memory norms, taking turns.
3. The eager prefill with an observer that evaluates every cell's output as it comes: the seconds between
   evaluations, summed per cell type over the blocks. Eager launches cost more than compiled ones, so the split
   says where the time is, not what the compiled graph spends.
Ratios and shares are what to read; absolute times swing between GPU leases.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xlstm_viz  # noqa: E402,F401  (the BLAS and MLX settings before MLX)
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from xlstm_viz.model import mlstm_cell, mlstm_kernels  # noqa: E402
from xlstm_viz.model.mlstm_cell import MLSTMState  # noqa: E402

SEVEN_B = dict(embedding_dim=4096, num_heads=8, num_blocks=32, vocab_size=50304, chunk_size=64)


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def alternate(variants: dict, rounds: int) -> dict:
    """Median seconds per variant, the variants taking turns in every round after one untimed call each."""
    for fn in variants.values():
        fn()
    times = defaultdict(list)
    for _ in range(rounds):
        for name, fn in variants.items():
            times[name].append(_time(fn))
    return {name: statistics.median(t) for name, t in times.items()}


class _FloatCIn:
    """mlstm_kernels.chunk_states as before the bf16 store: the scan writes float32 C_in whatever is asked."""

    def __init__(self):
        self.real = mlstm_kernels.chunk_states

    def __call__(self, *args, c_in_dtype=mx.float32, **kwargs):
        C_in, *rest = self.real(*args, **kwargs)
        return C_in.astype(c_in_dtype), *rest


def model_with_random_weights(blocks: int, chunk_size: int = 64):
    from mlx.utils import tree_map

    from xlstm_viz.config import XLSTMConfig
    from xlstm_viz.model import XLSTM

    model = XLSTM(XLSTMConfig.from_dict({**SEVEN_B, "num_blocks": blocks, "chunk_size": chunk_size}), compute_dtype="bfloat16")
    model.update(tree_map(lambda p: p.astype(mx.bfloat16), model.parameters()))
    mx.eval(model.parameters())
    return model


def c_in_store(model, lengths, rounds) -> dict:
    out = {}
    rng = np.random.default_rng(0)
    real = mlstm_kernels.chunk_states
    for S in lengths:
        ids = mx.array(rng.integers(0, model.config.vocab_size, (1, S)), mx.int32)
        fns = {}
        # Each variant is traced with its own chunk_states in place (the cell's inner compiled graphs are dropped
        # first), then keeps its graph.
        for name, chunk_states in (("c_in_bf16", real), ("c_in_float32", _FloatCIn())):
            mlstm_kernels.chunk_states = chunk_states
            mlstm_cell._COMPILED.clear()
            prefill = model.compiled("chunkwise")
            fns[name] = lambda prefill=prefill: mx.eval(prefill(ids, None))
            fns[name]()
        mlstm_kernels.chunk_states = real
        mlstm_cell._COMPILED.clear()
        out[S] = alternate(fns, rounds)
        print(f"prefill {S}: C_in stored bf16 {out[S]['c_in_bf16'] * 1e3:.1f} ms, float32 then rounded "
              f"{out[S]['c_in_float32'] * 1e3:.1f} ms", flush=True)
    return out


def cell_chunk_lengths(lengths, rounds, chunk_lengths=(64, 128, 256), NH=8, DQK=256, DV=512) -> dict:
    out = {}
    for S in lengths:
        ks = mx.random.split(mx.random.key(S), 5)
        q, k = (mx.random.normal((1, NH, S, DQK), key=x).astype(mx.bfloat16) for x in ks[:2])
        v = mx.random.normal((1, NH, S, DV), key=ks[2]).astype(mx.bfloat16)
        i, f = (3 * mx.random.normal((1, NH, S), key=x) for x in ks[3:])
        state = MLSTMState.zeros(1, NH, DQK, DV)
        mx.eval(q, k, v, i, f)
        variants = {}
        for L in chunk_lengths:
            variants[f"L={L}"] = lambda L=L: mx.eval(mlstm_cell.chunkwise(q, k, v, i, f, state, 1e-6, L)[:2])
            # with the per-token memory norms of a stats trace
            variants[f"L={L}+norms"] = lambda L=L: mx.eval(
                mlstm_cell.chunkwise(q, k, v, i, f, state, 1e-6, L, with_trace=True)[2].C_norm)
        out[S] = alternate(variants, rounds)
        first = chunk_lengths[0]
        h = {L: mlstm_cell.chunkwise(q, k, v, i, f, state, 1e-6, L)[0].astype(mx.float32) for L in chunk_lengths}
        scale = float(mx.max(mx.abs(h[first])))
        out[S]["rel_diff"] = {L: float(mx.max(mx.abs(h[L] - h[first]))) / scale for L in chunk_lengths[1:]}
        print(f"one block's cell at {S} tokens (ms): " + ", ".join(
            f"{k} {v * 1e3:.3f}" for k, v in out[S].items() if k.startswith("L=")) +
            f"; max |h_L - h_{first}| / max |h_{first}|: {out[S]['rel_diff']}", flush=True)
    return out


def cell_ops(S: int, L: int, rounds: int, NH=8, DQK=256, DV=512, norms: bool = True) -> dict:
    """The chunkwise cell's steps one by one (eager, each evaluated before the next is timed), as
    `mlstm_cell._chunkwise` computes them under compute_dtype="bfloat16": which step the compiled cell's time is in.
    norms: then a stats trace's memory norms step by step, and `_chunk_memory_norms` compiled whole (issue 16: they
    added ~21 ms to a 7B trace's compiled graph on an H200, 0.65 ms a block, several times what their products and
    passes should take; the whole-function line is not part of the cell's total)."""
    from xlstm_viz.model.activations import exp, log_sigmoid

    ks = mx.random.split(mx.random.key(S), 5)
    q, k = (mx.random.normal((1, NH, S, DQK), key=x).astype(mx.bfloat16) for x in ks[:2])
    v = mx.random.normal((1, NH, S, DV), key=ks[2]).astype(mx.bfloat16)
    i, f = (3 * mx.random.normal((1, NH, S), key=x) for x in ks[3:])
    state = MLSTMState.zeros(1, NH, DQK, DV)
    mx.eval(q, k, v, i, f)
    B, nc, mm = 1, S // L, mx.bfloat16
    causal = mx.tril(mx.ones((L, L), dtype=mx.bool_))
    product = lambda x, y: (x.astype(mm) @ y.astype(mm)).astype(mx.float32)
    steps = {}

    def run():
        t = {}
        env = {}

        def step(name, fn):
            t0 = time.perf_counter()
            out = fn()
            mx.eval(out)
            t[name] = time.perf_counter() - t0
            return out

        k_in = k.reshape(B, NH, nc, L, DQK)
        v_in = v.reshape(B, NH, nc, L, DV)
        qs = step("q scaled, bf16", lambda: (q.astype(mx.float32).reshape(B, NH, nc, L, DQK) * DQK**-0.5))
        q_mm = step("q to bf16", lambda: qs.astype(mm))
        b = step("gates: cumsum log sigma(f)", lambda: mx.cumsum(log_sigmoid(f.reshape(B, NH, nc, L)), axis=-1))
        ic = i.reshape(B, NH, nc, L)
        b_last = b[..., -1:]
        a = step("a = b_last - b + i", lambda: b_last - b + ic)
        U = step("chunk updates (k^T v per chunk)", lambda: mlstm_cell.chunk_updates(k_in, v_in, a))
        # the dispatch's chunk states compute the updates again: this step minus the one above is the scan
        C_in = step("chunk updates + scan", lambda: mlstm_kernels.chunk_states(k_in, v_in, a, b_last, state,
                                                                               c_in_dtype=mm)[:3])
        C_in, n_in, m_in = C_in
        log_d = step("log D (L x L)", lambda: mx.where(causal, b[..., :, None] - b[..., None, :] + ic[..., None, :],
                                                        -mx.inf))
        m_t = step("m_t = max(...)", lambda: mx.maximum(b + m_in, mx.max(log_d, axis=-1)))
        d = step("D = exp(log D - m)", lambda: exp(log_d - m_t[..., None]))
        alpha = step("alpha", lambda: exp(b + m_in - m_t))
        qk = step("q k^T (bf16)", lambda: product(q_mm, k_in.swapaxes(-1, -2)))
        scores = step("scores = q k^T * D", lambda: qk * d)
        qC = step("q C_in (bf16)", lambda: product(q_mm, C_in))
        sv = step("scores v (bf16)", lambda: product(scores, v_in))
        num = step("numerator", lambda: alpha[..., None] * qC + sv)
        qn = step("q n_in + sum scores", lambda: alpha * (qs @ n_in[..., None])[..., 0] + mx.sum(scores, axis=-1))
        step("h = num / denominator", lambda: (num / (mx.maximum(mx.abs(qn), exp(-m_t)) + 1e-6)[..., None]).reshape(
            B, NH, nc * L, DV).astype(mm))
        if norms:  # a stats trace's memory norms, as mlstm_cell._chunk_memory_norms computes them
            n_t = step("norms: n_t = alpha n_in + D k", lambda: alpha[..., None] * n_in[:, :, :, None, :]
                       + product(d, k_in))
            kk = step("norms: k k^T (bf16)", lambda: product(k_in, k_in.swapaxes(-1, -2)))
            vv = step("norms: v v^T (bf16)", lambda: product(v_in, v_in.swapaxes(-1, -2)))
            gram = step("norms: gram = kk * vv", lambda: kk * vv)
            kC = step("norms: k C_in (bf16)", lambda: product(k_in, C_in))
            cross = step("norms: cross = sum(k C_in * v)", lambda: mx.sum(kC * v_in.astype(mx.float32), axis=-1))
            C32 = C_in.astype(mx.float32)
            c_in_sq = step("norms: ||C_in||^2", lambda: mx.sum(C32 * C32, axis=(-2, -1)))
            d_cross = step("norms: D cross", lambda: (d @ cross[..., None])[..., 0])
            d_gram = step("norms: D gram (bf16)", lambda: product(d, gram))
            quad = step("norms: sum(D gram * D)", lambda: mx.sum(d_gram * d, axis=-1))
            step("norms: sqrt(c_sq), ||n_t||", lambda: (
                mx.sqrt(mx.maximum(alpha**2 * c_in_sq[..., None] + 2 * alpha * d_cross + quad, 0.0)),
                mx.sqrt(mx.sum(n_t * n_t, axis=-1))))
            whole = mlstm_cell._chunk_memory_norms
            step("norms: _chunk_memory_norms compiled, whole", lambda: whole(alpha, d, k_in, v_in, C_in, n_in,
                                                                               "bfloat16"))
        return t

    run()
    runs = [run() for _ in range(rounds)]
    med = {name: statistics.median(r[name] for r in runs) for name in runs[0]}
    total = sum(sec for name, sec in med.items() if not name.startswith("norms:"))
    print(f"cell steps, eager, {S} tokens, L={L}: {total * 1e3:.3f} ms in all", flush=True)
    for name, sec in med.items():
        if not name.startswith("norms:"):
            print(f"  {name:36s} {sec * 1e3:8.3f} ms {sec / total:6.1%}", flush=True)
    steps = {name: sec for name, sec in med.items() if name.startswith("norms:") and "whole" not in name}
    if steps:
        part = sum(steps.values())
        print(f"memory norms, eager step by step: {part * 1e3:.3f} ms in all", flush=True)
        for name, sec in steps.items():
            print(f"  {name:44s} {sec * 1e3:8.3f} ms {sec / part:6.1%}", flush=True)
        for name, sec in med.items():
            if "whole" in name:
                print(f"  {name:44s} {sec * 1e3:8.3f} ms", flush=True)
    return med


class _TimingObserver:
    """Evaluates each cell's output (and a memory cell's state) as its event arrives; time since the last one."""

    stepping = False

    def __init__(self):
        self.per_type = defaultdict(float)
        self.last = None

    def wants_memory_trace(self, block):
        return False

    def on_cell(self, event):
        state = getattr(event, "state", None)
        arrays = [event.output] + (list(state.arrays()) if hasattr(state, "arrays") else [])
        mx.eval(arrays)
        now = time.perf_counter()
        self.per_type[event.cell_type] += now - self.last
        self.last = now


def eager_breakdown(model, S, rounds) -> dict:
    from xlstm_viz.execution.trace import Executor

    ids = mx.array(np.random.default_rng(1).integers(0, model.config.vocab_size, (1, S)), mx.int32)
    runs = []
    for r in range(rounds + 1):
        obs = _TimingObserver()
        obs.last = time.perf_counter()
        logits, _ = Executor(model).forward_observed(ids, mode="chunkwise", observer=obs)
        mx.eval(logits)
        obs.per_type["(logits after the last cell)"] += time.perf_counter() - obs.last
        if r:
            runs.append(dict(obs.per_type))
    types = runs[0].keys()
    med = {t: statistics.median(run.get(t, 0.0) for run in runs) for t in types}
    total = sum(med.values())
    print(f"eager observed prefill {S}: {total * 1e3:.1f} ms; per cell type (ms, share):", flush=True)
    for t, s in sorted(med.items(), key=lambda x: -x[1]):
        print(f"  {t:32s} {s * 1e3:8.2f}  {s / total:6.1%}", flush=True)
    return med


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=32)
    ap.add_argument("--lengths", default="2048,8192")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--chunk-lengths", default="64,128,256", help="the cell part's chunk lengths")
    ap.add_argument("--chunk-size", type=int, default=64, help="the model's chunk_size (the 7B config's is 64)")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: store, cell, eager, ops")
    ap.add_argument("--ops", default="2048:64,2048:256,8192:64,8192:256", help="the ops part's tokens:chunk pairs")
    a = ap.parse_args()
    lengths = [int(x) for x in a.lengths.split(",")]
    skip = set(filter(None, a.skip.split(",")))
    print(f"device {mx.default_device()}, kernels {mlstm_kernels.warm_up()}", flush=True)
    if "cell" not in skip:
        cell_chunk_lengths(lengths, a.rounds, [int(x) for x in a.chunk_lengths.split(",")])
    if "ops" not in skip:
        for pair in a.ops.split(","):
            S, L = (int(x) for x in pair.split(":"))
            cell_ops(S, L, a.rounds)
    if {"store", "eager"} - skip:
        model = model_with_random_weights(a.blocks, a.chunk_size)
        if "store" not in skip:
            c_in_store(model, lengths, a.rounds)
        if "eager" not in skip:
            eager_breakdown(model, lengths[0], a.rounds)


if __name__ == "__main__":
    main()
