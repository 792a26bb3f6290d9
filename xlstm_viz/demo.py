"""The bundled demo model: a small xLSTM trained on multi-query associative recall (MQAR).

It is the default model of the app and of `xlstm_viz.load_demo()`, so that gates, memory norms and ablations
show learned structure on first launch with nothing to download. `xlstm-viz train-demo --out DIR` retrains it
from `DEMO_RECIPE` (seeded); the shipped folder holds config.json, model.safetensors, task.json and the
training log.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from xlstm_viz.tasks import MQARTask

# Everything `train-demo` needs to reproduce assets/demo. Changing it means retraining and re-shipping.
DEMO_RECIPE = {
    "task": {"num_keys": 64, "num_values": 64},
    "config": {
        "embedding_dim": 128,
        "num_heads": 4,
        "num_blocks": 2,
        "vocab_size": 130,  # = the task vocabulary: <pad>, ?, K0..K63, V0..V63
        "chunk_size": 16,
        "qk_dim_factor": 0.5,
        "v_dim_factor": 1.0,
        "ffn_proj_factor": 2.667,
        "chunkwise_kernel": "chunkwise--native_autograd",
        "sequence_kernel": "native_sequence__native",
        "step_kernel": "native",
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": 0,
    },
    # Pair counts per batch; the model is tested on more pairs than the most frequent training count.
    "curriculum": {"pair_counts": [2, 4, 8, 12, 16], "weights": [0.1, 0.2, 0.4, 0.15, 0.15], "ramp_steps": 300,
                   "query_fraction": 0.5},
    "eval_pairs": [8, 16, 24, 32],
    "steps": 4000,
    "batch_size": 64,
    "lr": 3e-3,
    "seed": 0,
    # previous_key_weight: the scaffold that lets recall form (training.py); seed 0 is part of the recipe: on
    # GPU runs of this recipe, seeds 1 and 2 stayed on the "bag of values" plateau for 4000 steps (see README).
    "train_options": {"weight_decay": 0.01, "clip_norm": 1.0, "init": "mqar-demo", "previous_key_weight": 0.3},
}


# The bundled models by name (`xlstm-viz serve --model NAME`, the app's model selector): folder under assets/.
DEMOS = {"demo": "demo", "hybrid": "hybrid"}


# The hybrid demo: an AutoNCP-wired CfC block, then an mLSTM block, on MQAR with 32 keys and 32 values. The mLSTM
# block alone has no causal conv and cannot tie a value to the key before it; the CfC neurons carry the previous
# token into the value's position (their recurrence is the only path for it), so recall needs the NCP: zeroing its
# motor neurons drops recall to chance (tests/test_demo_model.py). chunk_size 32 = the longest training sequence,
# so every batch has one shape and the compiled step (with the CfC's token loop unrolled) is traced once.
HYBRID_RECIPE = {
    "task": {"num_keys": 32, "num_values": 32},
    "config": {
        "embedding_dim": 64,
        "num_heads": 2,
        "num_blocks": 2,
        "block_types": ["cfc", "mlstm"],
        "ncps": {"units": 32, "output_size": 16, "sparsity_level": 0.5, "seed": 22222, "mode": "default"},
        "vocab_size": 66,  # <pad>, ?, K0..K31, V0..V31
        "chunk_size": 32,
        "qk_dim_factor": 0.5,
        "v_dim_factor": 1.0,
        "ffn_proj_factor": 2.0,
        "chunkwise_kernel": "chunkwise--native_autograd",
        "sequence_kernel": "native_sequence__native",
        "step_kernel": "native",
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": 0,
    },
    "curriculum": {"pair_counts": [2, 4, 6, 8, 10], "weights": [0.1, 0.2, 0.2, 0.3, 0.2], "ramp_steps": 250,
                   "query_fraction": 0.5},
    "eval_pairs": [4, 8, 10],
    "steps": 2500,
    "batch_size": 32,
    "lr": 3e-3,
    "seed": 0,
    "train_options": {"weight_decay": 0.01, "clip_norm": 1.0, "init": "mqar-demo", "previous_key_weight": 0.3},
}
RECIPES = {"demo": DEMO_RECIPE, "hybrid": HYBRID_RECIPE}


def demo_path(name: str = "demo") -> Path:
    """Folder of a shipped checkpoint ("demo": the mLSTM MQAR model; "hybrid": mLSTM + NCP-wired CfC block).

    Installed packages carry it as `xlstm_viz/assets/demo` (top-level assets/ is mapped into the package);
    a source checkout has it at `<repo>/assets/demo`.
    """
    if name not in DEMOS:
        raise ValueError(f"unknown bundled model {name!r}; bundled models: {sorted(DEMOS)}")
    folder = DEMOS[name]
    candidates = []
    try:
        candidates.append(Path(str(resources.files("xlstm_viz") / "assets" / folder)))
    except (ModuleNotFoundError, TypeError):
        pass
    candidates.append(Path(__file__).resolve().parent.parent / "assets" / folder)
    for path in candidates:
        if (path / "config.json").is_file():
            return path
    raise FileNotFoundError(
        f"the {name} checkpoint is missing; looked in " + ", ".join(str(p) for p in candidates)
        + f" (retrain it with `xlstm-viz train-demo --model {name} --out assets/{folder}`)"
    )


def load_task(path: str | Path | None = None) -> MQARTask:
    """The task (vocabulary, token labels) a demo-style checkpoint was trained on."""
    path = Path(path) if path is not None else demo_path()
    return MQARTask.load(path / "task.json")


def load_demo(dtype: str = "float32", name: str = "demo"):
    """Load a bundled xLSTM (`name`: "demo" or "hybrid") via `xlstm_viz.load_model`; its task is `model.task`.

    `model.task.decode(ids)` gives readable token labels (`K17`, `V4`, `?`).
    """
    from xlstm_viz.checkpoint import load_model

    path = demo_path(name)
    model = load_model(path, dtype=dtype)
    model.task = load_task(path)
    return model
