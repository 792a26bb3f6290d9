"""Decode-step speed of the mLSTM cell at xLSTM-7B sizes: fused kernel vs the pure-MLX step, and the official
triton step kernel (mlstm_kernels, PyTorch) where it imports and a CUDA GPU runs, in the same run.

    python benchmarks/kernel_speed.py [--blocks 32] [--tokens 200] [--batch 1] [--peak-gbs 4800]
    python benchmarks/kernel_speed.py --model [--lengths 2048,8192] [--compute-dtype bfloat16] [--json out.json]

--model: the whole xLSTM-7B (D=4096, 8 heads, 32 blocks, vocab 50304, random bf16 weights, B=1), ours (MLX,
compiled, `compute_dtype`) then the official xLSTMLarge (torch, triton_limit_chunk + triton step kernels) in the same
process: prefill tok/s, decode B=1 tok/s against the bandwidth limit (weight bytes per token over the read rate of a
measured device-to-device copy), the first-call compile time and a stats trace against the untraced forward.

One token = the cell's recurrent step in each of --blocks blocks (NH=8, DQK=256, DV=512, float32 states; q, k, v
bf16). The floor is the bytes each step must move: C read and written (float32), n read and written, q, k, v read,
h written; the bandwidth ratio is (bytes / measured time) / --peak-gbs (H200 datasheet 4.8 TB/s by default).
The cell only: projections, norms and the rest of a block are not in these numbers.

Measured 2026-12-01 on one H200 (mlx-cuda 0.32.4, torch 2.11, triton 3.6, mlstm_kernels 2.0.6), 32 blocks:
  B=1:  pure MLX 9175 us/token, fused 1015 us (9.0x), triton 2096 us (fused 2.06x); a second run 9903 / 1621 / 4032
        (6.1x, 2.49x). At B=1 every path is launch-bound (fused: 32 launches, ~30 us each; floor 56 us): 6% of peak.
  B=64: pure MLX 30024 us, fused 8026 us (3.7x, 45% of 4.8 TB/s), triton 5040 us (71%): the fused kernel is 0.63x
        triton once the step is bandwidth-bound; its per-thread serial loop over DQK/8 rows is the next thing to fix.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xlstm_viz.blas  # noqa: E402,F401  (before MLX: it picks the BLAS)
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from xlstm_viz.model import mlstm_cell, mlstm_kernels  # noqa: E402
from xlstm_viz.model.mlstm_cell import MLSTMState  # noqa: E402

NH, DQK, DV = 8, 256, 512


def step_bytes(batch: int) -> int:
    per_head = 2 * 4 * DQK * DV + 2 * 4 * DQK + 2 * (2 * DQK + DV) + 4 * DV + 4 * 4
    return batch * NH * per_head


def time_mlx(step, blocks, tokens, batch, repeats=5):
    ks = mx.random.split(mx.random.key(0), 8)
    states = [MLSTMState(mx.random.normal((batch, NH, DQK, DV), key=ks[0]) * 0.1,
                         mx.random.normal((batch, NH, DQK), key=ks[1]) * 0.1, mx.zeros((batch, NH, 1)))
              for _ in range(blocks)]
    q, k = (mx.random.normal((batch, NH, DQK), key=x).astype(mx.bfloat16) for x in ks[2:4])
    v = mx.random.normal((batch, NH, DV), key=ks[4]).astype(mx.bfloat16)
    i, f = (mx.random.normal((batch, NH, 1), key=x).astype(mx.bfloat16) for x in ks[5:7])
    mx.eval(states, q, k, v, i, f)

    def run(n):
        nonlocal states
        for _ in range(n):
            hs = []
            for b in range(blocks):
                h, states[b] = step(q, k, v, i, f, states[b], 1e-6)
                hs.append(h)
            mx.eval(hs, [s.arrays() for s in states])  # one token, as a decode loop evaluates it
    run(3)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(tokens)
        times.append((time.perf_counter() - t0) / tokens)
    return statistics.median(times)


def time_triton(blocks, tokens, batch, repeats=5):
    try:
        import torch
        from mlstm_kernels.torch.recurrent.triton_step import mlstm_recurrent_step__triton
    except Exception as error:  # noqa: BLE001
        return None, f"{type(error).__name__}: {error}"
    if not torch.cuda.is_available():
        return None, "torch sees no CUDA GPU"
    dev = "cuda"
    states = [(torch.randn(batch, NH, DQK, DV, device=dev) * 0.1, torch.randn(batch, NH, DQK, device=dev) * 0.1,
               torch.zeros(batch, NH, 1, device=dev)) for _ in range(blocks)]
    q, k = (torch.randn(batch, NH, DQK, device=dev, dtype=torch.bfloat16) for _ in range(2))
    v = torch.randn(batch, NH, DV, device=dev, dtype=torch.bfloat16)
    i, f = (torch.randn(batch, NH, 1, device=dev, dtype=torch.bfloat16) for _ in range(2))

    def run(n):
        for _ in range(n):
            for b in range(blocks):
                c, nn, m = states[b]
                h, states[b] = mlstm_recurrent_step__triton(q, k, v, i, f, c, nn, m, eps=1e-6)
            torch.cuda.synchronize()
    run(3)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(tokens)
        times.append((time.perf_counter() - t0) / tokens)
    return statistics.median(times), "ok"


# --- the whole 7B model (--model): ours (MLX, compiled) vs the official xLSTMLarge (torch + triton), one process ---

SEVEN_B = dict(embedding_dim=4096, num_heads=8, num_blocks=32, vocab_size=50304, chunk_size=64)
OFFICIAL_KERNELS = dict(chunkwise_kernel="chunkwise--triton_limit_chunk",  # triton_xl_chunk: LLVM assert, triton 3.6
                        sequence_kernel="native_sequence__triton", step_kernel="triton")


def _median_time(fn, repeats, sync):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def copy_bandwidth_gbs(sync=mx.eval) -> float:
    """Device-to-device copy through MLX, bytes read + written per second (as the issue's ~4.3 TB/s counts them)."""
    x = mx.random.normal((2**28 if mx.default_device() != mx.cpu else 2**20,)).astype(mx.bfloat16)  # 512 MiB
    mx.eval(x)
    y = None

    def once():
        nonlocal y
        y = mx.array(x, dtype=mx.float16)  # a dtype change: a real read + write (a same-dtype copy may alias)
        mx.eval(y)
    for _ in range(3):
        once()
    t = _median_time(once, 10, lambda: None)
    return 2 * x.nbytes / t / 1e9


def torch_copy_gbs() -> float | None:
    """The same copy through PyTorch (bytes read + written per second), where torch sees a CUDA GPU."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    x = torch.empty(2**31, dtype=torch.uint8, device="cuda")  # 2 GiB
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize()
    t = _median_time(lambda: y.copy_(x), 10, torch.cuda.synchronize)
    del x, y
    torch.cuda.empty_cache()
    return 2 * 2**31 / t / 1e9


def block_matmuls(fused: bool, D=4096, qk=2048, v=4096, ffn=10944, nh=8):
    """(in, out) of one block's projections, as the model runs them (fused: q|k|v|o, i|f and up_gate|up as one
    matmul each, what the official weight_mode='fused' does)."""
    if fused:
        return [(D, 2 * qk + 2 * v), (D, 2 * nh), (v, D), (D, 2 * ffn), (ffn, D)]
    return [(D, qk), (D, qk), (D, v), (D, v), (D, nh), (D, nh), (v, D), (D, ffn), (D, ffn), (ffn, D)]


def matmul_floor_s(tokens: int, fused: bool, blocks: int, vocab: int = 50304, D: int = 4096) -> float:
    """Seconds for just the model's matmuls (every block's projections and lm_head) on `tokens` bf16 rows: what
    prefill (tokens = S) or a decode step (tokens = 1) would take if nothing else ran. One block's weights serve
    every block (403 MB, far over the 60 MB L2, so a decode step still streams them)."""
    shapes = block_matmuls(fused)
    ws = [mx.random.normal((o, i)).astype(mx.bfloat16) * 0.01 for i, o in shapes]
    head = mx.random.normal((vocab, D)).astype(mx.bfloat16) * 0.01
    xs = {i: mx.random.normal((tokens, i)).astype(mx.bfloat16) for i in {i for i, _ in shapes}}
    mx.eval(ws, head, xs)

    def run():
        outs = [xs[w.shape[1]] @ w.T for _ in range(blocks) for w in ws]
        outs.append(xs[D] @ head.T)
        mx.eval(outs)
    for _ in range(2):
        run()
    t = _median_time(run, 5, lambda: None)
    del ws, head, xs
    mx.clear_cache()
    return t


def chunk_cell_times(S: int, L: int = 64, B: int = 1, NH: int = 8, DQK: int = 256, DV: int = 512) -> dict:
    """One block's memory cell at 7B sizes over S tokens (chunkwise, bf16 q, k, v): the chunk-state kernel vs the
    pure-MLX loop over chunks, for the inter-chunk part alone and for the whole chunkwise form."""
    import os

    ks = mx.random.split(mx.random.key(1), 5)
    q, k = (mx.random.normal((B, NH, S, DQK), key=x).astype(mx.bfloat16) for x in ks[:2])
    v = mx.random.normal((B, NH, S, DV), key=ks[2]).astype(mx.bfloat16)
    i, f = (3 * mx.random.normal((B, NH, S), key=x) for x in ks[3:])
    state = MLSTMState.zeros(B, NH, DQK, DV)
    args = mlstm_kernels.chunk_inputs(B, NH, S // L, L, DQK, DV, dtype=mx.bfloat16)
    out = {}
    for mode in ("kernel", "mlx"):
        os.environ[mlstm_kernels.ENV] = mode
        whole = lambda: mx.eval(mlstm_cell.chunkwise(q, k, v, i, f, state, 1e-6, L)[:2])
        inter = lambda: mx.eval(mlstm_kernels.chunk_states(*args))
        for fn in (whole, inter):
            fn()
        out[mode] = {"chunkwise_ms": 1e3 * _median_time(whole, 5, lambda: None),
                     "chunk_states_ms": 1e3 * _median_time(inter, 5, lambda: None)}
    del os.environ[mlstm_kernels.ENV]
    return out


def mlx_matmul_tflops(m, k, n, dtype=mx.bfloat16) -> float:
    a = mx.random.normal((m, k)).astype(dtype)
    b = mx.random.normal((k, n)).astype(dtype)
    mx.eval(a, b)
    for _ in range(3):
        mx.eval(a @ b)
    t = _median_time(lambda: mx.eval(a @ b), 10, lambda: None)
    return 2 * m * k * n / t / 1e12


def trace_phases(model, ids, repeats=3) -> dict:
    """Where a stats trace's time goes (medians, seconds): the observed forward with no probe (the observer's events
    alone), with every probe but the memory's and input gate's held (no memory norms), and with every probe held
    (the memory cells' MemoryTrace norms too), each evaluated but without stats; the Recorder's finish, split into
    the one stats launch evaluated and the host copy of its buffer, then the first read of every stat (its pages
    reach the host when read); the eager forward that also brings its logits to
    the host; and the logits' host copy alone (what the trace no longer does unless its logits are read)."""
    from xlstm_viz.execution import stats_gpu
    from xlstm_viz.execution.trace import Executor, Recorder

    no_memory = [n for n in model.probe_names() if not n.endswith(("mlstm.memory", "mlstm.igate"))]

    def observed(probes=None):
        recorder = Recorder(model, probes, "stats")
        logits, _ = Executor(model).forward_observed(ids, mode="chunkwise", observer=recorder)
        return recorder, logits

    def held(probes=None):
        recorder, logits = observed(probes)
        mx.eval(logits, recorder._outputs, recorder._memory)

    finish_parts = {"finish": [], "finish_launch_eval": [], "finish_host_copy": [], "stats_first_read": []}
    seen = {}
    real_pack = stats_gpu.pack

    def timed_pack(*args, **kwargs):  # the launch evaluated alone, then its host copy, inside a real finish
        packed, plan = real_pack(*args, **kwargs)
        t0 = time.perf_counter()
        mx.eval(packed)
        t1 = time.perf_counter()
        np.array(packed, copy=False)
        seen["launch"], seen["copy"] = t1 - t0, time.perf_counter() - t1
        return packed, plan

    def finish_only():
        recorder, logits = observed()
        mx.eval(logits, recorder._outputs, recorder._memory)
        stats_gpu.pack = timed_pack
        try:
            t0 = time.perf_counter()
            stats, _ = recorder.finish(logits)
            t1 = time.perf_counter()
            for values in stats.values():  # every number read once: the host pages the trace's views defer
                for value in values.values():
                    np.sum(value)
            finish_parts["finish"].append(t1 - t0)
            finish_parts["stats_first_read"].append(time.perf_counter() - t1)
        finally:
            stats_gpu.pack = real_pack
        if "launch" in seen:
            finish_parts["finish_launch_eval"].append(seen.pop("launch"))
            finish_parts["finish_host_copy"].append(seen.pop("copy"))

    logits = model(ids)[0]
    mx.eval(logits)
    finish_only()  # warm
    for parts in finish_parts.values():
        parts.clear()
    from xlstm_viz.execution.trace import _forward_compiled

    def compiled_held(probes=None):  # the compiled trace's graph alone: its outputs evaluated, no stats
        recorder = Recorder(model, probes, "stats")
        logits = _forward_compiled(model, recorder, ids, None)
        mx.eval(logits, recorder._outputs, recorder._memory)

    compiled_held(no_memory)
    compiled_held()
    out = {
        "compiled_graph_holding_probes_but_memory": _median_time(lambda: compiled_held(no_memory), repeats,
                                                                 lambda: None),
        "compiled_graph_holding_probes": _median_time(compiled_held, repeats, lambda: None),
        "forward_observed_no_probes": _median_time(lambda: held([]), repeats, lambda: None),
        "forward_holding_probes_but_memory": _median_time(lambda: held(no_memory), repeats, lambda: None),
        "forward_holding_probes": _median_time(held, repeats, lambda: None),
    }
    for _ in range(repeats):
        finish_only()
    out.update({k: float(np.median(v)) for k, v in finish_parts.items() if v})
    out["eager_with_host_logits"] = _median_time(lambda: np.array(model(ids)[0]), repeats, lambda: None)
    out["host_copy_of_logits"] = _median_time(lambda: np.array(logits), repeats, lambda: None)
    return out


def decode_pipelined(step, token, state, n: int, host: list | None = None):
    """n steps of xlstm_viz.generate's loop: the greedy token fed back, step t+1 queued before token t is read
    (torch's decode loop gets the same overlap from CUDA's asynchronous launches). `host` collects the seconds each
    step takes to build and queue, which the device hides while it is busier than that. Returns the last state."""
    lg, state = step(token, state)
    y = mx.argmax(lg[:, -1, :], axis=-1).astype(mx.int32).reshape(1, 1)
    for _ in range(n - 1):
        t0 = time.perf_counter()
        lg, state = step.lazy(y, state)
        following = mx.argmax(lg[:, -1, :], axis=-1).astype(mx.int32).reshape(1, 1)
        mx.async_eval(following, [s.arrays() for s in state])
        if host is not None:
            host.append(time.perf_counter() - t0)
        y.item()
        y = following
    mx.eval(y, [s.arrays() for s in state])
    return state


def ours_7b(lengths, decode_tokens, trace_len, compute_dtype, blocks, chunk_size=64):
    import xlstm_viz  # noqa: F401  (MLX_ENABLE_TF32=0 and the BLAS before the model)
    from mlx.utils import tree_flatten, tree_map

    from xlstm_viz.config import XLSTMConfig
    from xlstm_viz.model import XLSTM

    out = {}
    config = XLSTMConfig.from_dict({**SEVEN_B, "num_blocks": blocks, "chunk_size": chunk_size})
    model = XLSTM(config, compute_dtype=compute_dtype)
    model.update(tree_map(lambda p: p.astype(mx.bfloat16), model.parameters()))  # random weights, bf16
    mx.eval(model.parameters())
    params = dict(tree_flatten(model.parameters()))
    weight_bytes = sum(v.nbytes for k, v in params.items() if "embeddings" not in k)  # a token reads one embedding row
    out["weight_bytes_per_token"] = weight_bytes
    out["matmul_params"] = sum(v.size for k, v in params.items() if "embeddings" not in k)
    out["kernels"] = mlstm_kernels.warm_up()
    print(f"ours: compute {model.activation_dtype_name()}, kernels {out['kernels']}, "
          f"{weight_bytes / 1e9:.2f} GB of weights per token", flush=True)
    prefill = model.compiled("chunkwise")
    rng = np.random.default_rng(0)
    for S in lengths:
        ids = mx.array(rng.integers(0, config.vocab_size, (1, S)), mx.int32)
        t0 = time.perf_counter()
        logits, state = prefill(ids, None)
        mx.eval(logits, [s.arrays() for s in state])
        first = time.perf_counter() - t0
        t = _median_time(lambda: mx.eval(prefill(ids, None)), 3, lambda: None)
        out[f"prefill_{S}"] = {"first_call_s": first, "s": t, "tok_s": S / t}
        print(f"ours prefill {S}: first call {first:.1f} s, then {t * 1e3:.1f} ms = {S / t:,.0f} tok/s", flush=True)
    # decode B=1 from the last prefill's state
    step = model.compiled_step()
    token = mx.array([[1]], mx.int32)
    t0 = time.perf_counter()
    logits, state = step(token, state)
    mx.eval(logits, [s.arrays() for s in state])
    out["decode_first_call_s"] = time.perf_counter() - t0

    def decode_synced():  # each step evaluated before the next is built
        nonlocal state
        for _ in range(decode_tokens):
            lg, state = step(token, state)
            mx.eval(lg, [s.arrays() for s in state])

    host = []

    def decode():
        nonlocal state
        state = decode_pipelined(step, token, state, decode_tokens, host)
    for name, fn in (("decode_synced", decode_synced), ("decode", decode)):
        fn()
        host.clear()
        t = _median_time(fn, 3, lambda: None) / decode_tokens
        out[name] = {"s_per_token": t, "tok_s": 1 / t}
        if name == "decode":
            out[name]["host_s_per_step"] = float(np.median(host))
        print(f"ours {name.replace('_', ' ')} B=1: first call {out['decode_first_call_s']:.1f} s, {t * 1e3:.2f} ms/token "
              f"= {1 / t:.1f} tok/s" + (f"; building and queueing a step {np.median(host) * 1e3:.2f} ms on the host"
                                        if host else ""), flush=True)
    if trace_len:
        ids = mx.array(rng.integers(0, config.vocab_size, (1, trace_len)), mx.int32)
        t0 = time.perf_counter()
        model.run_with_trace(ids, mode="stats", compiled=True)  # first call: traces and compiles the graph
        first_compiled = time.perf_counter() - t0
        model.run_with_trace(ids, mode="stats", compiled=False)  # warm (stats kernel compile)
        mx.eval(model(ids)[0])
        # the two traces and the two untraced forwards take turns, so drift on the machine hits all four alike
        times = {"traced_s": [], "traced_eager_s": [], "eager_s": [], "compiled_s": []}
        runs = {"traced_s": lambda: model.run_with_trace(ids, mode="stats", compiled=True),
                "traced_eager_s": lambda: model.run_with_trace(ids, mode="stats", compiled=False),
                "eager_s": lambda: mx.eval(model(ids)[0]),
                "compiled_s": lambda: mx.eval(prefill(ids, None))}
        for _ in range(5):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        med = {k: float(np.median(v)) for k, v in times.items()}
        traced, eager, compiled = med["traced_s"], med["eager_s"], med["compiled_s"]
        out["trace"] = {"tokens": trace_len, **med, "first_compiled_trace_s": first_compiled,
                        "per_round": times, "phases": trace_phases(model, ids)}
        print(f"ours stats trace {trace_len} (medians of 5 alternating rounds): compiled trace {traced * 1e3:.1f} ms "
              f"(first call {first_compiled:.1f} s), eager trace {med['traced_eager_s'] * 1e3:.1f} ms; untraced "
              f"compiled {compiled * 1e3:.1f} ms, eager {eager * 1e3:.1f} ms. Compiled trace vs untraced compiled "
              f"+{100 * (traced / compiled - 1):.0f}%, vs untraced eager +{100 * (traced / eager - 1):.0f}%; eager "
              f"trace vs untraced eager +{100 * (med['traced_eager_s'] / eager - 1):.0f}%", flush=True)
        print("ours stats trace phases (ms): " + ", ".join(
            f"{k} {v * 1e3:.1f}" for k, v in out["trace"]["phases"].items()), flush=True)
    del model, prefill, step, state
    mx.clear_cache()
    return out


def official_7b(lengths, decode_tokens, blocks, chunk_size=64):
    import torch
    from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig

    out = {}
    cfg = xLSTMLargeConfig(**{**SEVEN_B, "num_blocks": blocks, "chunk_size": chunk_size}, **OFFICIAL_KERNELS, mode="inference",
                           return_last_states=True, autocast_kernel_dtype="bfloat16", inference_state_dtype="float32")
    with torch.device("cuda"):
        model = xLSTMLarge(cfg).to(torch.bfloat16).eval()
    sync = torch.cuda.synchronize
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for S in lengths:
            ids = torch.randint(0, cfg.vocab_size, (1, S), generator=g).cuda()
            t0 = time.perf_counter()
            logits, state = model(ids)
            sync()
            first = time.perf_counter() - t0
            t = _median_time(lambda: model(ids), 3, sync)
            out[f"prefill_{S}"] = {"first_call_s": first, "s": t, "tok_s": S / t}
            print(f"official prefill {S}: first call {first:.1f} s, then {t * 1e3:.1f} ms = {S / t:,.0f} tok/s",
                  flush=True)
        token = torch.ones((1, 1), dtype=torch.long, device="cuda")

        def decode():
            nonlocal state
            for _ in range(decode_tokens):
                lg, state = model(token, state)
            sync()
        decode()
        t = _median_time(decode, 3, sync) / decode_tokens
        out["decode"] = {"s_per_token": t, "tok_s": 1 / t}
        print(f"official decode B=1: {t * 1e3:.2f} ms/token = {1 / t:.1f} tok/s", flush=True)
    del model
    torch.cuda.empty_cache()
    return out


def model_main(a):
    import json

    lengths = [int(x) for x in a.lengths.split(",")]
    res = {"device": str(mx.default_device()), "blocks": a.blocks, "compute_dtype": a.compute_dtype}
    res["copy_gbs_mlx"] = copy_bandwidth_gbs()
    res["copy_gbs_torch"] = torch_copy_gbs()
    res["copy_gbs"] = res["copy_gbs_torch"] or res["copy_gbs_mlx"]
    print(f"d2d copy (read + write): MLX {res['copy_gbs_mlx']:.0f} GB/s, torch {res['copy_gbs_torch']} GB/s", flush=True)
    sizes = ((8192, 8192, 8192), (2048, 4096, 4096), (2048, 4096, 10944), (2048, 4096, 12288), (2048, 4096, 21888),
             (2048, 10944, 4096), (8192, 4096, 50304))
    if mx.default_device() == mx.cpu:  # a smoke run: the GPU's matmul sizes would take minutes
        sizes = ((256, 256, 256),)
    res["matmul_tflops"] = {f"{m}x{k}x{n}": mlx_matmul_tflops(m, k, n) for m, k, n in sizes}
    print(f"MLX d2d copy {res['copy_gbs']:.0f} GB/s (read + write); bf16 matmul TFLOP/s {res['matmul_tflops']}",
          flush=True)
    if mx.default_device() != mx.cpu:
        res["matmul_floor_s"] = {f"{'fused' if fused else 'single'}_{n}": matmul_floor_s(n, fused, a.blocks)
                                 for n in (*lengths, 1) for fused in (False, True)}
        print(f"matmuls alone (s): {res['matmul_floor_s']}", flush=True)
        res["cell"] = {S: chunk_cell_times(S) for S in lengths}
        print(f"one block's memory cell (ms): {res['cell']}", flush=True)
    res["chunk_size"], res["official_chunk_size"] = a.chunk_size, a.official_chunk_size or a.chunk_size
    res["ours"] = ours_7b(lengths, a.decode_tokens, a.trace_len, a.compute_dtype, a.blocks, a.chunk_size)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    if not a.no_official:
        try:
            res["official"] = official_7b(lengths, a.decode_tokens, a.blocks, res["official_chunk_size"])
        except Exception as error:  # noqa: BLE001
            print(f"official: not run ({type(error).__name__}: {error})", flush=True)
    ours, off = res["ours"], res.get("official")
    # the definition: weight bytes per token over the copy bandwidth (bytes read + written per second)
    limit = res["copy_gbs"] * 1e9 / ours["weight_bytes_per_token"]
    res["decode_bandwidth_limit_tok_s"] = limit
    print(f"\n7B shapes, {a.blocks} blocks, B=1, bf16 weights, ours compute_dtype={a.compute_dtype}, chunk_size "
          f"ours {res['chunk_size']}, official {res['official_chunk_size']}")
    print(f"{'':28s} {'official':>12s} {'ours':>12s} {'ours/official':>14s}")
    for S in lengths:
        o = off[f"prefill_{S}"]["tok_s"] if off else float("nan")
        w = ours[f"prefill_{S}"]["tok_s"]
        print(f"{'prefill ' + str(S) + ' tok/s':28s} {o:12,.0f} {w:12,.0f} {w / o:13.2f}x")
        flops = 2 * ours["matmul_params"] * S / ours[f"prefill_{S}"]["s"] / 1e12
        print(f"{'  ours projections TFLOP/s':28s} {'':12s} {flops:12.0f}")
        if "matmul_floor_s" in res:
            single, fused = res["matmul_floor_s"][f"single_{S}"], res["matmul_floor_s"][f"fused_{S}"]
            print(f"{'  matmuls alone ms':28s} {'':12s} {single * 1e3:12.1f}   (fused projections {fused * 1e3:.1f}; "
                  f"ours total {ours[f'prefill_{S}']['s'] * 1e3:.1f}, official {off[f'prefill_{S}']['s'] * 1e3 if off else float('nan'):.1f})")
    o = off["decode"]["tok_s"] if off else float("nan")
    w = ours["decode"]["tok_s"]
    print(f"{'decode B=1 tok/s':28s} {o:12.1f} {w:12.1f} {w / o:13.2f}x   bandwidth limit {limit:.0f} tok/s "
          f"({ours['weight_bytes_per_token'] / 1e9:.2f} GB at {res['copy_gbs']:.0f} GB/s): "
          f"ours {w / limit:.0%} of it")
    ws = ours["decode_synced"]["tok_s"]
    print(f"{'  ours, each step synced':28s} {'':12s} {ws:12.1f} {ws / o:13.2f}x   {ws / limit:.0%} of the limit; "
          f"a step's host work {ours['decode']['host_s_per_step'] * 1e3:.2f} ms")
    print(f"{'first call (compile) s':28s} {'':12s} " + ", ".join(
        f"prefill {S}: {ours[f'prefill_{S}']['first_call_s']:.1f}" for S in lengths)
        + f", decode: {ours['decode_first_call_s']:.1f}")
    if "matmul_floor_s" in res:
        print(f"{'  decode matmuls alone ms':28s} {'':12s} {res['matmul_floor_s']['single_1'] * 1e3:12.2f}   "
              f"(ours step {ours['decode']['s_per_token'] * 1e3:.2f})")
    if "trace" in ours:
        tr = ours["trace"]
        print(f"stats trace {tr['tokens']} tokens, compiled: {tr['traced_s'] * 1e3:.0f} ms vs untraced compiled "
              f"{tr['compiled_s'] * 1e3:.0f} ms (+{100 * (tr['traced_s'] / tr['compiled_s'] - 1):.0f}%; target +15%) "
              f"and eager {tr['eager_s'] * 1e3:.0f} ms (+{100 * (tr['traced_s'] / tr['eager_s'] - 1):.0f}%); the eager "
              f"trace {tr['traced_eager_s'] * 1e3:.0f} ms")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="store_true", help="the whole 7B model, ours vs official (see model_main)")
    ap.add_argument("--lengths", default="2048,8192", help="--model: prefill lengths")
    ap.add_argument("--decode-tokens", type=int, default=32, help="--model: tokens per timed decode run")
    ap.add_argument("--trace-len", type=int, default=2048, help="--model: stats trace length (0: none)")
    ap.add_argument("--compute-dtype", default="bfloat16", help="--model: ours compute_dtype")
    ap.add_argument("--no-official", action="store_true")
    ap.add_argument("--json", default=None, help="--model: write the figures as JSON")
    ap.add_argument("--blocks", type=int, default=32)
    ap.add_argument("--chunk-size", type=int, default=64, help="--model: ours chunk_size (the 7B config's is 64)")
    ap.add_argument("--official-chunk-size", type=int, default=None, help="--model: the official's (default: ours)")
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--peak-gbs", type=float, default=4800.0)
    a = ap.parse_args()
    if a.model:
        return model_main(a)
    which = mlstm_kernels.backend()
    print(f"device {mx.default_device()}, kernel backend {which}, B={a.batch} NH={NH} DQK={DQK} DV={DV} "
          f"blocks={a.blocks} tokens={a.tokens}")
    floor_bytes = step_bytes(a.batch) * a.blocks
    rows = {"pure MLX step": time_mlx(mlstm_cell.recurrent_step, a.blocks, a.tokens, a.batch)}
    if which is not None:
        rows["fused kernel"] = time_mlx(lambda *x: mlstm_kernels.fused_step(*x, which=which), a.blocks, a.tokens,
                                        a.batch)
    t, why = time_triton(a.blocks, a.tokens, a.batch)
    if t is not None:
        rows["official triton step"] = t
    else:
        print(f"official triton step: not run ({why})")
    print(f"bytes per token (floor): {floor_bytes / 1e6:.1f} MB -> {floor_bytes / (a.peak_gbs * 1e9) * 1e6:.1f} us "
          f"at {a.peak_gbs:.0f} GB/s")
    print(f"{'path':24s} {'us/token':>10s} {'tokens/s':>10s} {'GB/s':>8s} {'of peak':>8s}")
    for name, sec in rows.items():
        gbs = floor_bytes / sec / 1e9
        print(f"{name:24s} {sec * 1e6:10.1f} {1 / sec:10.1f} {gbs:8.0f} {gbs / a.peak_gbs:8.2f}")
    if "fused kernel" in rows:
        for other in ("pure MLX step", "official triton step"):
            if other in rows:
                print(f"fused kernel speed-up over {other}: {rows[other] / rows['fused kernel']:.2f}x")


if __name__ == "__main__":
    main()
