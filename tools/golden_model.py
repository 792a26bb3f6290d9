"""Fixtures for the model dimensions and for saving, made from the official code (run through tools/make_golden.py).

    /work/venv-ref/bin/python tools/make_golden.py --out tests/fixtures/golden --only dims d96
    /work/venv-ref/bin/python tools/make_golden.py --out tests/fixtures/golden --only fused_save \
        --project-python .venv/bin/python

What each writes under <out>/:
  dims/official_dims.npz   for every width D in 8..8192 and ffn_proj_factor 2.667 and 2.6667 (m = 64): the FFN width
                           (`up_proj_dim`) of the official `FeedForward`, and qk_dim / v_dim of the official
                           `mLSTMLayer` (factors 0.5 / 1.0). Both modules are built on torch's meta device, so this
                           reads the official code's own attributes without allocating weights.
  d96/                     an official model at D = 96, where the official FFN is 256 wide and ceil(D*f/m)*m gives
                           320: config.json, model.safetensors (bfloat16-exact weights, stored as bfloat16) and
                           reference.npz with the keys of tools/make_golden.py (no intermediates, no float64 run).
  tiny_fused/              the tiny model in weight_mode "fused", converted by the official
                           `convert_single_weights_to_fused_weights` and written in the 7B naming (bfloat16, exact),
                           plus official_accepts_save.json: what `XLSTM.save` wrote after `load_model(tiny_fused)`
                           (run in the project venv given by --project-python; tensor names and shapes, weight_mode),
                           written only after the official `xLSTMLarge` loaded that folder with
                           `load_state_dict(strict=True)` and reproduced tiny's official logits.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.official_model import (  # noqa: E402
    PACKAGE_TO_CHECKPOINT, build_official, official_config, save_checkpoint,
)

DIM_WIDTHS = (8, 8192)  # inclusive
DIM_FACTORS = (2.667, 2.6667)  # the 7B config's factor and the official xLSTMLargeConfig default
DIM_MULTIPLE = 64

D96 = dict(embedding_dim=96, num_heads=4, num_blocks=2, vocab_size=61, chunk_size=16,
           ffn_proj_factor=2.667, ffn_round_up_to_multiple_of=64)
D96_SEEDS = (7, 8, 9)  # the first whose official chunkwise/step spread is below the limit is used


def make_dims(out: Path) -> dict:
    from xlstm.xlstm_large.model import FeedForward, mLSTMLayer, mLSTMLayerConfig

    widths = np.arange(DIM_WIDTHS[0], DIM_WIDTHS[1] + 1)
    result = {"widths": widths.astype(np.int32)}
    with torch.device("meta"):
        for f in DIM_FACTORS:
            ffn = []
            for D in widths:
                cfg = official_config(dict(embedding_dim=int(D), num_heads=1, num_blocks=1, vocab_size=8,
                                           ffn_proj_factor=f, ffn_round_up_to_multiple_of=DIM_MULTIPLE))
                ffn.append(FeedForward(cfg).up_proj_dim)
            result[f"ffn_dim_{f}"] = np.array(ffn, dtype=np.int32)
        qk, v = [], []
        for D in widths:
            layer = mLSTMLayer(mLSTMLayerConfig(embedding_dim=int(D), num_heads=1, qk_dim_factor=0.5, v_dim_factor=1.0))
            qk.append(layer.qk_dim)
            v.append(layer.v_dim)
        result["qk_dim_0.5"] = np.array(qk, dtype=np.int32)
        result["v_dim_1.0"] = np.array(v, dtype=np.int32)
    folder = out / "dims"
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "official_dims.npz", **result)
    return {f"widths where ceil(D*{f}/64)*64 differs": int(np.sum(np.ceil(widths * f / 64) * 64 != result[f"ffn_dim_{f}"]))
            for f in DIM_FACTORS} | {"file bytes": (folder / "official_dims.npz").stat().st_size}


def make_d96(out: Path) -> dict:
    import make_golden as G

    folder = out / "d96"
    for seed in D96_SEEDS:
        model = build_official(D96, seed)
        rng = np.random.default_rng(seed + 1)
        ref = {}
        for prefix, run in (("", G.MAIN_RUN), ("short/", G.SHORT_RUN)):
            ids = torch.from_numpy(rng.integers(0, D96["vocab_size"], size=(run["batch"], run["length"])))
            r = G.references(model, None, ids, run["prefill_len"], with_intermediates=False)
            ref.update({prefix + k: v for k, v in r.items()})
        main = {k: v for k, v in ref.items() if not k.startswith("short/")}
        short = {k[len("short/"):]: v for k, v in ref.items() if k.startswith("short/")}
        spread = {**G.consistency(main, D96["num_blocks"]), **{f"short {k}": v for k, v in
                                                               G.consistency(short, D96["num_blocks"]).items()}}
        worst = max(v for k, v in spread.items() if "logits" in k)
        if worst <= G.SELF_CONSISTENCY_LIMIT:
            break
    else:
        raise RuntimeError(f"d96: no seed in {D96_SEEDS} keeps the official self-consistency below the limit")
    ffn = model.backbone.blocks[0].ffn.up_proj_dim
    if ffn != 256:
        raise RuntimeError(f"d96: the official FFN width is {ffn}, expected 256 (the case this fixture is for)")
    if folder.exists():
        shutil.rmtree(folder)
    save_checkpoint(model, folder, dtype="bfloat16")
    G._save_npz(folder / "reference.npz", ref)
    G.check_reload(folder, folder / "reference.npz")
    return {"seed": seed, "official ffn_dim": ffn, "consistency": spread,
            "files": {p.name: p.stat().st_size for p in sorted(folder.iterdir())}}


def _official_from_folder(folder: Path):
    """The official model from a checkpoint folder, strict: every tensor name and shape must match its config
    (weight_mode included), as xLSTMLarge.load_state_dict(strict=True) checks them."""
    from safetensors.torch import load_file
    from xlstm.xlstm_large.model import xLSTMLarge

    config = json.loads((folder / "config.json").read_text())
    tensors = load_file(folder / "model.safetensors")
    to_package = {v: k for k, v in PACKAGE_TO_CHECKPOINT.items()}
    model = xLSTMLarge(official_config(config))
    model.load_state_dict({to_package.get(k, k): t.float() for k, t in tensors.items()}, strict=True)
    return model.eval(), config


def make_fused_save(out: Path, project_python: str) -> dict:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    from xlstm.xlstm_large.utils import convert_single_weights_to_fused_weights

    tiny = out / "tiny"
    ref = np.load(tiny / "reference.npz")
    ids = torch.from_numpy(ref["input_ids"].astype(np.int64))

    # 1. tiny in the official fused layout (the official converter; tiny's weights are bfloat16-exact, so they are
    #    stored as bfloat16 without changing a value).
    fused_dir = out / "tiny_fused"
    if fused_dir.exists():
        shutil.rmtree(fused_dir)
    fused_dir.mkdir(parents=True)
    config = json.loads((tiny / "config.json").read_text())
    config.update(weight_mode="fused", torch_dtype="bfloat16")
    (fused_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    # The converter concatenates in the order it meets the keys, so it needs the module's own state_dict order
    # (q, k, v, ogate; i, f; gate, up): a safetensors file lists its keys sorted, which would fuse k first.
    single, _ = _official_from_folder(tiny)
    fused = convert_single_weights_to_fused_weights(dict(single.state_dict()))
    save_file({PACKAGE_TO_CHECKPOINT.get(k, k): v.to(torch.bfloat16).contiguous() for k, v in fused.items()},
              fused_dir / "model.safetensors", metadata={"format": "pt"})
    official_fused, _ = _official_from_folder(fused_dir)
    with torch.inference_mode():
        fused_diff = float(np.abs(official_fused(ids)[0].numpy() - ref["logits_chunkwise"]).max())
    if fused_diff > 1e-5:
        raise RuntimeError(f"the official fused tiny gives logits {fused_diff:.3g} from tiny's reference")

    # 2. Our load_model + save on it, in the project venv (MLX is not in this one), then the official strict load.
    with tempfile.TemporaryDirectory() as tmp:
        code = "import sys, xlstm_viz; xlstm_viz.load_model(sys.argv[1]).save(sys.argv[2])"
        subprocess.run([project_python, "-c", code, str(fused_dir), tmp], check=True, cwd=ROOT)
        written = sorted(p.name for p in Path(tmp).iterdir())
        try:
            official_saved, saved_config = _official_from_folder(Path(tmp))
        except Exception as err:  # noqa: BLE001 - reported with what was written
            raise RuntimeError(f"the official xLSTMLarge refuses what XLSTM.save wrote ({written}): {err}") from None
        with torch.inference_mode():
            saved_diff = float(np.abs(official_saved(ids)[0].numpy() - ref["logits_chunkwise"]).max())
        if saved_diff > 1e-5:
            raise RuntimeError(f"official logits on the saved folder are {saved_diff:.3g} from tiny's reference")
        with safe_open(Path(tmp) / "model.safetensors", "pt") as fh:
            tensors = {k: list(fh.get_slice(k).get_shape()) for k in sorted(fh.keys())}
    report = {
        "what": "XLSTM.save after xlstm_viz.load_model(tiny_fused), loaded by the official xLSTMLarge "
                "(load_state_dict strict=True) and run on tiny's input_ids",
        "official_strict_load": "ok",
        "files": written,
        "weight_mode": saved_config["weight_mode"],
        "tensors": tensors,
        "max_abs_logits_vs_tiny_reference": saved_diff,
    }
    (fused_dir / "official_accepts_save.json").write_text(json.dumps(report, indent=1) + "\n")
    for p in fused_dir.iterdir():
        p.chmod(0o644)
    return {k: v for k, v in report.items() if k != "tensors"} | {
        "fused_input_logits_vs_tiny_reference": fused_diff,
        "files": {p.name: p.stat().st_size for p in sorted(fused_dir.iterdir())}}


GENERATORS = {"dims": make_dims, "d96": make_d96, "fused_save": make_fused_save}
