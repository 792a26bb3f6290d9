"""The official xLSTM-Large run in bfloat16 (weights, projections, norms' outputs and FFN in bf16, the mLSTM kernel
on the bf16 q, k, v, i, f widened to float32, float32 states), on the "small" golden model, for the accuracy of `compute_dtype` (tests/test_compute_dtype.py, README "Compute dtype").

    /work/venv-ref/bin/python tools/make_golden.py --out tests/fixtures/golden --only bf16

Reads <out>/small (its config.json, bf16-stored weights and reference.npz's input ids; run `--only small` first if it
is missing) and writes <out>/bf16/reference.npz:
  input_ids                  int32 [B, S], small's main run (B=2, S=37)
  logits_chunkwise_bf16      the official chunkwise call with bf16 weights and activations (its bf16 logits as float32)
  logits_chunkwise_f32       the same call all in float32 (what small/reference.npz holds as logits_chunkwise)
No weights are written: the model is small's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def _official(folder: Path, dtype: str):
    from safetensors.torch import load_file
    from xlstm.xlstm_large.model import xLSTMLarge

    from benchmarks.official_model import PACKAGE_TO_CHECKPOINT, official_config

    config = json.loads((folder / "config.json").read_text())
    cfg = official_config(config)
    model = xLSTMLarge(cfg)
    to_package = {v: k for k, v in PACKAGE_TO_CHECKPOINT.items()}
    tensors = load_file(folder / "model.safetensors")
    model.load_state_dict({to_package.get(k, k): t.float() for k, t in tensors.items()}, strict=True)
    model = model.to(getattr(torch, dtype)).eval()
    if dtype == "bfloat16":
        # The CPU's native chunkwise kernel takes no bf16 inputs with float32 states ("expected m1 and m2 to have
        # the same dtype"; only the triton wrappers autocast). So the kernel gets the bf16 q, k, v, i, f widened to
        # float32 (what the memory cell of compute_dtype="bfloat16" does) and its h is rounded back to bf16, the
        # dtype the triton kernels return it in.
        def widen(module, args, kwargs):
            return args, {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
                          for k, v in kwargs.items()}

        def narrow(module, args, kwargs, output):
            h, state = output
            return h.to(torch.bfloat16), state

        for name, module in model.named_modules():
            if name.endswith("mlstm_backend"):
                module.register_forward_pre_hook(widen, with_kwargs=True)
                module.register_forward_hook(narrow, with_kwargs=True)
    return model


def make(out: Path) -> dict:
    small = out / "small"
    ids = np.load(small / "reference.npz")["input_ids"]
    result = {"input_ids": ids.astype(np.int32)}
    with torch.no_grad():
        for dtype, key in (("bfloat16", "logits_chunkwise_bf16"), ("float32", "logits_chunkwise_f32")):
            logits, _ = _official(small, dtype)(torch.from_numpy(ids.astype(np.int64)))
            result[key] = logits.float().numpy()
    folder = out / "bf16"
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "reference.npz", **result)
    f32, bf = result["logits_chunkwise_f32"], result["logits_chunkwise_bf16"]
    report = {"max |bf16 - f32| / max |f32|": float(np.abs(bf - f32).max() / np.abs(f32).max()),
              "argmax agreement": float((bf.argmax(-1) == f32.argmax(-1)).mean()),
              "files": {p.name: p.stat().st_size for p in sorted(folder.iterdir())}}
    print(f"== bf16: {json.dumps(report)}")
    return report
