"""Parity fixtures for the original xLSTM language model (`xlstm.xLSTMLMModel`, xlstm 2.0.6), from the official code.

Called by tools/make_golden.py (`--only orig_slstm orig_mixed orig_plain orig_sizes`); run with the reference
interpreter, torch on CPU:

    /work/venv-ref/bin/python tools/make_golden.py --out tests/fixtures/golden --only orig_slstm orig_mixed orig_plain orig_sizes

Per model, in <out>/<name>/:
  config.json         dataclasses.asdict(xLSTMLMModelConfig) (sLSTM backend "vanilla")
  model.safetensors   the official state_dict, official names (vanilla _recurrent_kernel_/_bias_ layout), stored as
                      bfloat16: every weight is bfloat16-representable, so upcast it is exactly the float32 model
  reference.npz       float32 (the _f64 keys are a float64 run of the same weights, rounded to float32)
"orig_plain" is a one-block sLSTM stack with the optional parts off (no conv, no group-norm weight, no FFN, no final
norm, tied head; lm_head.weight is not stored). "orig_sizes" is a mixed stack (s, m, s, m) with every size off its
default (`make_config`: mLSTM inner width, q/k/v block size, conv kernel and heads; sLSTM heads, conv kernel, FFN width
and activation). And <out>/orig_slstm_cuda/: the same sLSTM model with the config saying backend "cuda" and `_recurrent_kernel_`,
`_bias_` in the cuda layout (converted by the official ParameterProxy); orig_slstm/reference.npz applies to it.

Whenever any of them is generated, <out>/orig_widths/widths.json is written too: the official up-projection widths
(mLSTM inner dimension, FFN width) for D = 8..4096 and the factors in WIDTH_FACTORS.

Weights are random (numpy-seeded), scaled so that the gates are active: the sLSTM and mLSTM stabilisers switch between
the input gate and the forget path on a good fraction of tokens, forget gates range from ~0 to ~1, and the sLSTM
recurrent matrices are not zero (the official init sets them to zero, which would hide a wrong R layout).

Reference keys, for each run prefix "" (B=2, S=11) and "short/" (B=3, S=4, shorter than the conv window):
  input_ids                        int32 [B, S]
  logits_parallel                  official forward (mLSTM parallel form, sLSTM vanilla loop) [B, S, V]
  logits_step                      official `step`, one token at a time from an empty state [B, S, V]
  state_step/block{b}/...          final states of that step run:
      mLSTM: C [B, NH, DH, DH], n [B, NH, DH], m [B, NH, 1], conv [B, KS-1, inner] (the last KS-1 inputs)
      sLSTM: c, n, m, h [B, NH, DH], conv [B, KS-1, D]
  logits_parallel_f64              the forward in float64
and, main run only, per-block intermediates of the forward (`fwd/block{b}/...`), all [B, S, features]:
  in, out                          residual stream entering / leaving the block
  mLSTM: up (x_mlstm), z, conv (after SiLU), q, k, v, igate, fgate (pre-activations [B, S, NH]),
         memory (cell output before the group norm, heads concatenated), norm (after it), out (proj_down output)
  sLSTM: conv (after SiLU), igate, fgate, zgate, ogate (W x of the i/f/z/o slots: note i = layer.fgate(x_conv)),
         memory_i, memory_f, memory_z, memory_o (full pre-activations W x + R h + b), memory_c, memory_n, memory_m,
         memory_h (per step, [B, S, D]), norm (group norm output), ffn_out (FFN output before the residual add)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from xlstm import (
    FeedForwardConfig,
    mLSTMBlockConfig,
    mLSTMLayerConfig,
    sLSTMBlockConfig,
    sLSTMLayerConfig,
    xLSTMLMModel,
    xLSTMLMModelConfig,
)
from xlstm.blocks.mlstm.block import mLSTMBlock
from xlstm.blocks.slstm.block import sLSTMBlock
from xlstm.blocks.slstm.cell import sLSTMCell_cuda

NAMES = ("orig_slstm", "orig_mixed", "orig_plain", "orig_sizes")
SEEDS = {"orig_slstm": 7, "orig_mixed": 11, "orig_plain": 5, "orig_sizes": 13}
MAIN_RUN = dict(batch=2, length=11)
SHORT_RUN = dict(batch=3, length=4)
# The official code must agree with itself (forward vs step, float32 vs float64) well inside the 1e-3 logits tolerance.
SELF_CONSISTENCY_LIMIT = 2e-4


def make_config(name: str) -> xLSTMLMModelConfig:
    if name == "orig_sizes":
        # every size off its default, in a stack that starts with an sLSTM block (s, m, s, m): mLSTM proj_factor 1.5
        # rounded to a multiple of 16 (inner 48), q/k/v blocks of 8, conv kernel 2, 3 heads; sLSTM 4 heads (not the
        # mLSTM's), conv kernel 3, FFN proj_factor 1.7 rounded to a multiple of 8 (56) with swish
        return xLSTMLMModelConfig(
            mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(
                proj_factor=1.5, round_proj_up_to_multiple_of=16, qkv_proj_blocksize=8, conv1d_kernel_size=2,
                num_heads=3)),
            slstm_block=sLSTMBlockConfig(
                slstm=sLSTMLayerConfig(backend="vanilla", num_heads=4, conv1d_kernel_size=3),
                feedforward=FeedForwardConfig(proj_factor=1.7, round_proj_up_to_multiple_of=8, act_fn="swish")),
            context_length=16, num_blocks=4, embedding_dim=32, vocab_size=37, slstm_at=[0, 2],
        )
    if name == "orig_plain":
        # the optional parts switched off: no sLSTM conv, no group-norm weight, no FFN, no final norm, tied head
        return xLSTMLMModelConfig(
            mlstm_block=None, slstm_block=sLSTMBlockConfig(
                slstm=sLSTMLayerConfig(backend="vanilla", num_heads=2, conv1d_kernel_size=0, group_norm_weight=False),
                feedforward=None),
            context_length=16, num_blocks=1, embedding_dim=16, vocab_size=29, add_post_blocks_norm=False,
            tie_weights=True,
        )
    slstm_block = sLSTMBlockConfig(
        slstm=sLSTMLayerConfig(backend="vanilla", num_heads=4 if name == "orig_slstm" else 2, conv1d_kernel_size=4),
        feedforward=FeedForwardConfig(proj_factor=1.3, act_fn="gelu", bias=(name == "orig_slstm")),
    )
    if name == "orig_slstm":
        return xLSTMLMModelConfig(
            mlstm_block=None, slstm_block=slstm_block, context_length=16, num_blocks=2, embedding_dim=32,
            vocab_size=61, slstm_at="all",
        )
    return xLSTMLMModelConfig(
        mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(conv1d_kernel_size=4, qkv_proj_blocksize=4, num_heads=4)),
        slstm_block=slstm_block, context_length=16, num_blocks=3, embedding_dim=32, vocab_size=53, slstm_at=[1],
        bias=True,
    )


def randomize(model: xLSTMLMModel, seed: int) -> None:
    """Random weights by role, large enough that gates saturate and stabilisers switch (not a trained-like init)."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = tuple(p.shape)
            fan_in = shape[-1] if len(shape) > 1 else 1
            if name.endswith("norm.weight"):  # LayerNorm / group-norm weights are stored as offsets from 1
                v = rng.uniform(-0.5, 0.5, shape)
            elif name.endswith("learnable_skip"):
                v = rng.normal(1.0, 0.5, shape)
            elif name.endswith("slstm_cell._bias_"):
                v = rng.normal(0.5, 1.5, shape)
            elif name.endswith("mlstm_cell.fgate.bias"):
                v = rng.normal(2.0, 1.5, shape)
            elif name.endswith("mlstm_cell.igate.bias"):
                v = rng.normal(0.0, 1.5, shape)
            elif name.endswith("conv.weight"):
                v = rng.normal(0.0, 0.6, shape)
            elif name.endswith(".bias"):
                v = rng.normal(0.0, 0.1, shape)
            elif name.endswith("token_embedding.weight"):
                v = rng.normal(0.0, 1.0, shape)
            elif "mlstm_cell.igate" in name or "mlstm_cell.fgate" in name:
                v = rng.normal(0.0, 3.0 / np.sqrt(fan_in), shape)
            elif any(f"xlstm.{g}gate.weight" in name for g in "ifzo") or name.endswith("_recurrent_kernel_"):
                v = rng.normal(0.0, 1.5 / np.sqrt(fan_in), shape)
            else:
                v = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
            # bfloat16-representable, so the checkpoint is stored in bfloat16 (half the bytes) and loads exactly
            p.copy_(torch.from_numpy(v.astype(np.float32)).to(torch.bfloat16).to(torch.float32))


def build(name: str, dtype=torch.float32) -> tuple[xLSTMLMModelConfig, xLSTMLMModel]:
    cfg = make_config(name)
    torch.manual_seed(0)
    model = xLSTMLMModel(copy.deepcopy(cfg))
    randomize(model, SEEDS[name])
    return cfg, model.to(dtype).eval()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy().copy()


def run_step(model: xLSTMLMModel, ids: torch.Tensor) -> tuple[np.ndarray, dict]:
    """The official `step`, token by token from no state. Returns logits and the final state dict."""
    state, logits = None, []
    for t in range(ids.shape[1]):
        out, state = model.step(ids[:, t : t + 1], state)
        logits.append(out)
    return _np(torch.cat(logits, dim=1)), state


def final_states(model: xLSTMLMModel, state: dict, prefix: str) -> dict[str, np.ndarray]:
    out = {}
    for b, block in enumerate(model.xlstm_block_stack.blocks):
        s = state[f"block_{b}"]
        p = f"{prefix}/block{b}"
        if s["conv_state"] is not None:
            conv = s["conv_state"][0]  # [B, KS, F]: the official step keeps KS inputs, the oldest is already unused
            out[f"{p}/conv"] = _np(conv[:, 1:])
        if isinstance(block, mLSTMBlock):
            C, n, m = s["mlstm_state"]
            out.update({f"{p}/C": _np(C), f"{p}/n": _np(n[..., 0]), f"{p}/m": _np(m[..., 0])})
        else:
            nh = block.xlstm.config.num_heads
            y, c, n, m = s["slstm_state"]  # [B, H] each, official order (y, c, n, m)
            for key, t in (("h", y), ("c", c), ("n", n), ("m", m)):
                out[f"{p}/{key}"] = _np(t.reshape(t.shape[0], nh, -1))
    return out


def forward_with_intermediates(model: xLSTMLMModel, ids: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    captured: dict[str, np.ndarray] = {}
    handles = []

    def keep(key, pick):
        def hook(module, args, output=None):
            captured[key] = _np(pick(args, output))

        return hook

    for b, block in enumerate(model.xlstm_block_stack.blocks):
        p = f"fwd/block{b}"
        layer = block.xlstm
        handles += [
            block.register_forward_pre_hook(keep(f"{p}/in", lambda a, o: a[0])),
            block.register_forward_hook(keep(f"{p}/out", lambda a, o: o)),
            layer.register_forward_hook(keep(f"{p}/layer_out", lambda a, o: o)),
        ]
        if hasattr(layer, "conv_act_fn"):
            handles.append(layer.conv_act_fn.register_forward_hook(keep(f"{p}/conv", lambda a, o: o)))
        if isinstance(block, mLSTMBlock):
            inner = layer.config._inner_embedding_dim
            cell = layer.mlstm_cell
            handles += [
                layer.proj_up.register_forward_hook(keep(f"{p}/up", lambda a, o, n=inner: o[..., :n])),
                layer.proj_up.register_forward_hook(keep(f"{p}/z", lambda a, o, n=inner: o[..., n:])),
                layer.q_proj.register_forward_hook(keep(f"{p}/q", lambda a, o: o)),
                layer.k_proj.register_forward_hook(keep(f"{p}/k", lambda a, o: o)),
                layer.v_proj.register_forward_hook(keep(f"{p}/v", lambda a, o: o)),
                cell.igate.register_forward_hook(keep(f"{p}/igate", lambda a, o: o)),
                cell.fgate.register_forward_hook(keep(f"{p}/fgate", lambda a, o: o)),
                # outnorm sees the cell output [B, NH, S, DH]; heads concatenated like the layer does
                cell.outnorm.register_forward_pre_hook(
                    keep(f"{p}/memory", lambda a, o: a[0].transpose(1, 2).reshape(a[0].shape[0], a[0].shape[2], -1))
                ),
                cell.register_forward_hook(keep(f"{p}/norm", lambda a, o: o)),
            ]
        else:
            handles += [
                # the quirk: the i slot is computed by the parameter named fgate and the f slot by igate
                layer.fgate.register_forward_hook(keep(f"{p}/igate", lambda a, o: o)),
                layer.igate.register_forward_hook(keep(f"{p}/fgate", lambda a, o: o)),
                layer.zgate.register_forward_hook(keep(f"{p}/zgate", lambda a, o: o)),
                layer.ogate.register_forward_hook(keep(f"{p}/ogate", lambda a, o: o)),
                layer.group_norm.register_forward_hook(
                    keep(f"{p}/norm", lambda a, o: o.transpose(1, 2).reshape(o.shape[0], o.shape[2], -1))
                ),
            ]
            if block.ffn is not None:
                handles.append(block.ffn.register_forward_hook(keep(f"{p}/ffn_out", lambda a, o: o)))
            # The vanilla loop calls the pointwise function once per step: record raw pre-activations and states.
            cell = layer.slstm_cell
            original = cell.pointwise
            steps: list[dict] = []

            def pointwise(Wx, Ry, bias, states, constants, original=original, steps=steps):
                new, gates = original(Wx, Ry, bias, states, constants=constants)
                raw = (Wx + Ry + bias).view(Wx.shape[0], 4, -1)
                steps.append({"i": raw[:, 0], "f": raw[:, 1], "z": raw[:, 2], "o": raw[:, 3],
                              "h": new[0], "c": new[1], "n": new[2], "m": new[3]})
                return new, gates

            cell.pointwise = pointwise
            handles.append((cell, original, steps, p))
    with torch.no_grad():
        logits = model(ids)
    for h in handles:
        if isinstance(h, tuple):
            cell, original, steps, p = h
            cell.pointwise = original
            for key in "ifzochnm":
                captured[f"{p}/memory_{key}"] = _np(torch.stack([s[key] for s in steps], dim=1))
        else:
            h.remove()
    for b, block in enumerate(model.xlstm_block_stack.blocks):
        # the mLSTM layer output is its proj_down output; the sLSTM layer output is the group norm (already kept)
        p = f"fwd/block{b}"
        if isinstance(block, mLSTMBlock):
            captured[f"{p}/out_proj"] = captured.pop(f"{p}/layer_out")
        else:
            captured.pop(f"{p}/layer_out")
    return _np(logits), captured


def _maxdiff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def gate_activity(ref: dict, cfg: xLSTMLMModelConfig) -> dict[str, float]:
    """How often the stabiliser takes the input gate (m_t = i_t) rather than the forget path, per sLSTM block."""
    out = {}
    for key in ref:
        if key.endswith("/memory_m"):
            p = key[: -len("memory_m")]
            m, i = ref[key], ref[p + "memory_i"]
            out[p + "m_equals_i"] = float(np.mean(np.isclose(m[:, 1:], i[:, 1:], rtol=0, atol=1e-6)))
            f = ref[p + "memory_f"]
            sig = 1 / (1 + np.exp(-f))
            out[p + "sigmoid_f_min"] = float(sig.min())
            out[p + "sigmoid_f_max"] = float(sig.max())
        elif key.endswith("/memory") and key[: -len("memory")] + "fgate" in ref:
            # mLSTM: replay the max-state recurrence (m_0 = 0) from the gate pre-activations
            p = key[: -len("memory")]
            i, f = ref[p + "igate"].astype(np.float64), ref[p + "fgate"].astype(np.float64)
            m, hits = np.zeros(i[:, 0].shape), []
            for t in range(i.shape[1]):
                m = np.maximum(-np.log1p(np.exp(-f[:, t])) + m, i[:, t])
                hits.append(m == i[:, t])
            out[p + "m_equals_i"] = float(np.mean(hits))
    return out


def save_folder(folder: Path, cfg: xLSTMLMModelConfig, tensors: dict[str, torch.Tensor]) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    if cfg.tie_weights:  # one tensor under two names; safetensors keeps one (as safetensors.torch.save_model does)
        tensors = {k: v for k, v in tensors.items() if k != "lm_head.weight"}
    save_file({k: v.detach().contiguous().to(torch.bfloat16) for k, v in tensors.items()}, folder / "model.safetensors",
              metadata={"format": "pt"})


def to_cuda_layout(model: xLSTMLMModel) -> dict[str, torch.Tensor]:
    """The state_dict with every sLSTM cell's R and bias converted from the vanilla to the cuda backend layout."""
    sd = dict(model.state_dict())
    for b, block in enumerate(model.xlstm_block_stack.blocks):
        if not isinstance(block, sLSTMBlock):
            continue
        vanilla = block.xlstm.slstm_cell
        cuda = sLSTMCell_cuda(dataclasses.replace(vanilla.config, backend="cuda"), skip_backend_init=True)
        cuda.recurrent_kernel[:] = vanilla.recurrent_kernel.clone()  # external layout [NH, DH, G, DH]
        cuda.bias[:] = vanilla.bias.clone()  # external layout [NH, G, DH]
        p = f"xlstm_block_stack.blocks.{b}.xlstm.slstm_cell."
        sd[p + "_recurrent_kernel_"] = cuda._recurrent_kernel_.detach().clone()
        sd[p + "_bias_"] = cuda._bias_.detach().clone()
    return sd


def make(name: str, out: Path) -> dict:
    cfg, model = build(name)
    _, model64 = build(name, torch.float64)
    rng = np.random.default_rng(SEEDS[name] + 100)
    ref: dict[str, np.ndarray] = {}
    report: dict[str, float] = {}
    for prefix, run in (("", MAIN_RUN), ("short/", SHORT_RUN)):
        ids = torch.from_numpy(rng.integers(0, cfg.vocab_size, size=(run["batch"], run["length"])).astype(np.int64))
        ref[prefix + "input_ids"] = ids.numpy().astype(np.int32)
        with torch.no_grad():
            if prefix == "":
                logits, inter = forward_with_intermediates(model, ids)
                ref.update(inter)
            else:
                logits = _np(model(ids))
            logits_step, state = run_step(model, ids)
            ref[prefix + "logits_parallel_f64"] = _np(model64(ids))
        ref[prefix + "logits_parallel"] = logits
        ref[prefix + "logits_step"] = logits_step
        ref.update({prefix + k: v for k, v in final_states(model, state, "state_step").items()})
        report[prefix + "logits parallel vs step"] = _maxdiff(logits, logits_step)
        report[prefix + "logits f32 vs f64"] = _maxdiff(logits, ref[prefix + "logits_parallel_f64"])
        report[prefix + "logits absmax"] = float(np.abs(logits).max())
    report.update(gate_activity(ref, cfg))
    worst = max(v for k, v in report.items() if "vs" in k)
    if worst > SELF_CONSISTENCY_LIMIT:
        raise RuntimeError(f"{name}: the official code disagrees with itself by {worst:.3g} in the logits")
    folder = out / name
    save_folder(folder, cfg, model.state_dict())
    np.savez_compressed(folder / "reference.npz", **ref)
    if name == "orig_slstm":
        save_folder(out / "orig_slstm_cuda", dataclasses.replace(
            cfg, slstm_block=dataclasses.replace(
                cfg.slstm_block, slstm=dataclasses.replace(cfg.slstm_block.slstm, backend="cuda"))),
            to_cuda_layout(model))
    report["files"] = {p.name: p.stat().st_size for p in sorted(folder.iterdir())}
    return report


WIDTH_FACTORS = (1.3, 2.0, 4 / 3, 1.3333, 2.6667, 2.667)
WIDTH_DIMS = range(8, 4097, 8)


def make_widths(out: Path) -> None:
    """orig_widths/widths.json: the official up-projection widths (UpProjConfigMixin._set_proj_up_dim) for the
    factors the models use, every D in 8..4096 (step 8), rounded up and down to multiples of 64."""
    from xlstm.utils import UpProjConfigMixin

    table = {}
    for factor in WIDTH_FACTORS:
        for up in (True, False):
            dims = []
            for D in WIDTH_DIMS:
                mixin = UpProjConfigMixin(proj_factor=factor, round_proj_up_dim_up=up, round_proj_up_to_multiple_of=64)
                mixin._set_proj_up_dim(embedding_dim=D)
                dims.append(mixin._proj_up_dim)
            table[f"{factor!r}/{'up' if up else 'down'}"] = dims
    folder = out / "orig_widths"
    folder.mkdir(parents=True, exist_ok=True)
    data = {"dims": list(WIDTH_DIMS), "multiple_of": 64, "widths": table}
    (folder / "widths.json").write_text(json.dumps(data, separators=(",", ":")) + "\n")


def main(out: Path, names=NAMES) -> None:
    make_widths(out)
    for name in names:
        rep = make(name, out)
        print(f"== {name}")
        for k, v in rep.items():
            print(f"   {k:45s} {v if isinstance(v, dict) else f'{v:.3g}'}")
