"""The official NX-AI xLSTM-Large (PyTorch, CPU): build, randomise, save in the 7B naming, time.

Shared by `tools/make_golden.py` (parity fixtures) and `benchmarks/model_speed.py` (speed ratio ours/official).
Importing this module needs torch and the official packages, which live in their own venv so that the
project venv stays free of torch:

    python3 -m venv /work/venv-ref
    /work/venv-ref/bin/pip install torch==2.13.0 xlstm==2.0.6 mlstm_kernels==2.0.6 safetensors numpy

No `xlstm_viz` import here on purpose: this is the yardstick, it must not share code with what it measures.

Timing from the command line (what the golden report quotes):

    /work/venv-ref/bin/python benchmarks/official_model.py --size both --decode-steps 64

torch is not in the project venv, so a benchmark running there can get the official figures through a subprocess:
`/work/venv-ref/bin/python benchmarks/official_model.py --size both --json` prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig

# The PyPI wheels carry no triton kernels, so on CPU only the PyTorch ones exist. They compute the same function.
CPU_KERNELS = {
    "chunkwise_kernel": "chunkwise--native_autograd",
    "sequence_kernel": "native_sequence__native",
    "step_kernel": "native",
}

# The two sizes of issue 3's speed benchmark.
BENCHMARK_SIZES = {
    "d256": dict(embedding_dim=256, num_heads=4, num_blocks=4, vocab_size=1024, chunk_size=64),
    "d1024": dict(embedding_dim=1024, num_heads=8, num_blocks=8, vocab_size=50304, chunk_size=64),
}

# Only rename between the package's state_dict and NX-AI/xLSTM-7b (= transformers xLSTMForCausalLM).
PACKAGE_TO_CHECKPOINT = {"embedding.weight": "backbone.embeddings.weight"}

CONFIG_FIELDS = [f.name for f in dataclasses.fields(xLSTMLargeConfig)]


def official_config(config_dict: dict, dtype: str = "float32") -> xLSTMLargeConfig:
    """xLSTMLargeConfig from a config.json-style dict, forced onto the CPU kernels in inference mode.

    HF extras (model_type, hidden_size, ...) are ignored; embedding_dim/num_blocks win over the aliases.
    dtype="float64" also lifts the float32 forcing of the norms and the kernel/state dtypes, so that the whole
    forward runs in float64 (used to measure how much of the float32 spread is rounding noise).
    """
    d = {k: v for k, v in config_dict.items() if k in CONFIG_FIELDS}
    d.setdefault("embedding_dim", config_dict.get("hidden_size"))
    d.setdefault("num_blocks", config_dict.get("num_hidden_layers"))
    d.update(CPU_KERNELS, mode="inference", return_last_states=True)
    if dtype == "float32":
        d.update(autocast_kernel_dtype="float32", inference_state_dtype="float32")
    elif dtype == "float64":
        # The Literal types say float32/bfloat16/float16, but the backend only does getattr(torch, name).
        d.update(autocast_kernel_dtype="float64", inference_state_dtype="float64", norm_reduction_force_float32=False)
    else:
        raise ValueError(f"official_config: dtype must be 'float32' or 'float64', got {dtype!r}")
    return xLSTMLargeConfig(**d)


def _bf16_exact(a: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest bfloat16 (round-to-nearest-even), kept as float32.

    Weights that are exactly representable in bfloat16 let the same model be stored in float32 or bfloat16
    without changing a single number, so a bf16 checkpoint and its float32 reference agree bit for bit.
    """
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = (u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return rounded.view(np.float32)


def randomize_weights_(model: xLSTMLarge, seed: int, gate_std: float = 20.0, logit_std: float = 8.0) -> None:
    """Non-trivial, seeded weights (NumPy RNG, so the values do not depend on the torch version).

    Trained-like inits (gate weights 0, igate bias -10) hide bugs. Here the gate pre-activations have a spread
    of ~20 around per-head biases, so a large fraction lands beyond the soft cap (|x| > 15) on both sides:
    the input gate sometimes wins the max (m grows), the forget gate sometimes forgets hard (m falls), and the
    stabiliser m ends up non-zero and different per head. Norm weights are random around 1 so that a missing
    or misnamed norm weight shows. lm_head is scaled so that logits reach the output soft cap (30).
    All values are rounded to bfloat16-representable float32 (see _bf16_exact).
    """
    cfg = model.config
    rng = np.random.default_rng(seed)
    D, NH = cfg.embedding_dim, cfg.num_heads

    def normal(shape, std, mean=0.0):
        return rng.normal(mean, std, size=shape)

    new = {}
    for name, p in model.state_dict().items():
        shape = tuple(p.shape)
        fan_in = shape[-1] if len(shape) == 2 else D
        if name == "embedding.weight":
            w = normal(shape, 1.0)
        elif name.endswith(("norm_mlstm.weight", "norm_ffn.weight", "out_norm.weight", "multihead_norm.weight")):
            w = rng.uniform(0.5, 1.5, size=shape)
        elif name.endswith("igate_preact.weight") or name.endswith("fgate_preact.weight"):
            w = normal(shape, gate_std / math.sqrt(fan_in))
        elif name.endswith("igate_preact.bias"):
            w = np.linspace(-10.0, 6.0, NH) + normal(shape, 1.0)
        elif name.endswith("fgate_preact.bias"):
            w = np.linspace(-2.0, 8.0, NH) + normal(shape, 1.0)
        elif name.endswith("ogate_preact.weight"):
            w = normal(shape, 2.0 / math.sqrt(fan_in))
        elif name == "lm_head.weight":
            w = normal(shape, logit_std / math.sqrt(fan_in))
        elif name.endswith(".weight") and len(shape) == 2:  # q, k, v, out_proj, proj_up_gate, proj_up, proj_down
            w = normal(shape, 1.0 / math.sqrt(fan_in))
        elif name.endswith(".bias"):  # only with use_bias=True
            w = normal(shape, 0.1)
        else:
            raise ValueError(f"randomize_weights_: no init rule for parameter {name!r} {shape}")
        new[name] = torch.from_numpy(_bf16_exact(w.astype(np.float32)))
    model.load_state_dict(new, strict=True)


def build_official(config_dict: dict, seed: int, dtype: str = "float32") -> xLSTMLarge:
    """Official xLSTMLarge on CPU, in eval mode, with seeded non-trivial weights (see randomize_weights_)."""
    model = xLSTMLarge(official_config(config_dict, dtype=dtype))
    randomize_weights_(model, seed)
    return model.to(getattr(torch, dtype)).eval()


def hf_config_dict(config: xLSTMLargeConfig, torch_dtype: str = "float32") -> dict:
    """config.json in the NX-AI/transformers format: every xLSTMLargeConfig field plus the HF extras.

    hidden_size/num_hidden_layers are written with the true values: transformers' defaults (4096/32) would
    otherwise win for a small model.
    """
    d = dataclasses.asdict(config)
    d.update(
        model_type="xlstm",
        architectures=["xLSTMForCausalLM"],
        hidden_size=config.embedding_dim,
        num_hidden_layers=config.num_blocks,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=1,
        tie_word_embeddings=False,
        use_cache=False,  # HF rounds qk_dim/v_dim up to 64 for its cache: wrong for small models
        torch_dtype=torch_dtype,
    )
    return d


def checkpoint_state_dict(model: xLSTMLarge, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The package state_dict renamed to the NX-AI/xLSTM-7b keys (embedding.weight -> backbone.embeddings.weight)."""
    if model.config.weight_mode != "single":
        raise ValueError("checkpoint_state_dict: the 7B checkpoint naming exists for weight_mode='single' only")
    out = {}
    for name, t in model.state_dict().items():
        t = t.detach().to(dtype).contiguous()
        out[PACKAGE_TO_CHECKPOINT.get(name, name)] = t
    return out


def save_checkpoint(
    model: xLSTMLarge, folder: str | os.PathLike, dtype: str = "float32", num_shards: int = 1
) -> list[Path]:
    """Write config.json and model.safetensors (or an index + `num_shards` shards) in the 7B naming.

    `dtype` is the storage dtype of the weights ("float32" or "bfloat16"); the config's torch_dtype says the same.
    Returns the files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = checkpoint_state_dict(model, getattr(torch, dtype))
    written = [folder / "config.json"]
    # Save the float32 inference config even for a float64 model: the checkpoint describes the float32 model.
    cfg = dataclasses.replace(
        model.config, autocast_kernel_dtype="float32", inference_state_dtype="float32", norm_reduction_force_float32=True
    )
    written[0].write_text(json.dumps(hf_config_dict(cfg, torch_dtype=dtype), indent=2) + "\n")
    meta = {"format": "pt"}
    if num_shards == 1:
        save_file(tensors, folder / "model.safetensors", metadata=meta)
        return written + [folder / "model.safetensors"]
    # Split in checkpoint key order into shards of roughly equal byte size, like transformers does.
    names = list(tensors)
    total = sum(tensors[n].numel() * tensors[n].element_size() for n in names)
    shards, current, size = [], [], 0
    for n in names:
        current.append(n)
        size += tensors[n].numel() * tensors[n].element_size()
        if size >= total * (len(shards) + 1) / num_shards and len(shards) < num_shards - 1:
            shards.append(current)
            current = []
    shards.append(current)
    weight_map = {}
    for s, shard_names in enumerate(shards, start=1):
        fname = f"model-{s:05d}-of-{len(shards):05d}.safetensors"
        save_file({n: tensors[n] for n in shard_names}, folder / fname, metadata=meta)
        weight_map.update({n: fname for n in shard_names})
        written.append(folder / fname)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return written + [folder / "model.safetensors.index.json"]


def _best_of(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def time_official(
    model: xLSTMLarge, batch: int = 1, prefill_len: int = 512, decode_steps: int = 16, repeats: int = 3, seed: int = 0
) -> dict:
    """Prefill tokens/s and decode steps/s of the official model on the torch CPU (inference_mode, warm-up, best-of-N).

    Prefill: one call over [batch, prefill_len] from an empty state (chunkwise kernel).
    Decode: `decode_steps` single-token calls (step kernel) continuing from the prefill state; the rate is
    steps per second (each step advances all `batch` sequences by one token).
    """
    V = model.config.vocab_size
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (batch, prefill_len), generator=gen)
    step_ids = torch.randint(0, V, (batch, decode_steps), generator=gen)

    with torch.inference_mode():
        model(ids)  # two warm-ups: the first call of a process pays one-off allocation costs
        _, prefill_state = model(ids)  # ... and the state the decode timing starts from

        def prefill():
            model(ids)

        def decode():
            # The backbone updates a passed state in place, so start each repeat from a fresh copy.
            state = {b: tuple(t.clone() for t in s) for b, s in prefill_state.items()}
            for t in range(decode_steps):
                model(step_ids[:, t : t + 1], state)

        decode()  # warm-up of the step path
        t_prefill = _best_of(prefill, repeats)
        t_decode = _best_of(decode, repeats)
    return {
        "prefill_tok_s": batch * prefill_len / t_prefill,
        "decode_steps_s": decode_steps / t_decode,
        "prefill_s": t_prefill,
        "decode_s": t_decode,
        "batch": batch,
        "prefill_len": prefill_len,
        "decode_steps": decode_steps,
        "torch_threads": torch.get_num_threads(),
    }


def serve() -> None:
    """`--worker`: one JSON request per stdin line {"size", "prefill_len", "decode_steps", "repeats"}, one JSON answer
    per stdout line (time_official's result). The model of a size is built once, so a benchmark can interleave its
    own timings with the official ones round by round (on a shared machine the load changes between rounds).
    The first line, before any request, is {"ready": true}: torch's imports take a core for seconds, and a benchmark
    that times its own side meanwhile measures them too."""
    import sys

    print(json.dumps({"ready": True}), flush=True)
    models = {}
    for line in sys.stdin:
        req = json.loads(line)
        size = req["size"]
        if size not in models:
            cfg = dict(BENCHMARK_SIZES[size], ffn_proj_factor=2.667, ffn_round_up_to_multiple_of=64)
            models = {size: build_official(cfg, seed=0)}  # one model at a time: the D=1024 one is 0.6 GB
        r = time_official(models[size], prefill_len=req["prefill_len"], decode_steps=req["decode_steps"],
                          repeats=req.get("repeats", 1))
        print(json.dumps(dict(r, loadavg=os.getloadavg())), flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Time the official xLSTM-Large on the torch CPU.")
    ap.add_argument("--size", choices=[*BENCHMARK_SIZES, "both"], default="both")
    ap.add_argument("--prefill-len", type=int, default=512)
    ap.add_argument("--decode-steps", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--json", action="store_true", help="print one JSON object {size: time_official result} instead")
    ap.add_argument("--worker", action="store_true", help="answer timing requests on stdin (see serve())")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        return serve()
    sizes = list(BENCHMARK_SIZES) if args.size == "both" else [args.size]
    results = {}
    for name in sizes:
        cfg = dict(BENCHMARK_SIZES[name], ffn_proj_factor=2.667, ffn_round_up_to_multiple_of=64)
        model = build_official(cfg, seed=0)
        r = time_official(model, prefill_len=args.prefill_len, decode_steps=args.decode_steps, repeats=args.repeats)
        load = os.getloadavg()
        results[name] = dict(r, config=BENCHMARK_SIZES[name], loadavg=load)
        if args.json:
            continue
        print(
            f"official {name} {BENCHMARK_SIZES[name]}: prefill {r['prefill_tok_s']:.1f} tok/s "
            f"(1x{args.prefill_len} in {r['prefill_s']:.3f} s), decode {r['decode_steps_s']:.2f} steps/s "
            f"({args.decode_steps} steps in {r['decode_s']:.3f} s), torch threads {r['torch_threads']}, "
            f"loadavg {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
            flush=True,
        )
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
