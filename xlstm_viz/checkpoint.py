"""Load NX-AI xLSTM checkpoint folders strictly: config.json + model.safetensors or an index with shards.

Everything is checked against the safetensors headers before any tensor data is read (`xlstm_viz.wiring.headers`:
header structure, dtypes, offsets that cover the file exactly once, the index), and all problems are reported
together in one `CheckpointError`: missing, unexpected and mis-shaped tensors (expected vs found shape), truncated or
corrupt files, unknown dtypes, and a config that contradicts the tensor shapes. Tensor data is then read one tensor
at a time and cast to the target dtype before the next one is touched, so loading peaks at about one copy of the
weights in the target dtype (benchmarks/load_memory.py measures it): by MLX's lazy `mx.load`, which reads each tensor
straight into its buffer, or memory-mapped with numpy for the F64 files that `mx.load` cannot read. NaN/Inf weights
load with a warning that names them.

A checkpoint format is a naming: `_model_names` maps checkpoint tensor names and shapes to the model's, and
`_to_model` maps one loaded tensor the same way. The NX-AI format has two weight modes ('single', and 'fused', whose
concatenated projections are split); another format is one more branch in those two functions.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import xlstm_viz.blas  # noqa: F401  (fast BLAS must be bound before MLX loads)
import mlx.core as mx
from tqdm.auto import tqdm

from xlstm_viz.config import ConfigError, XLSTMConfig  # noqa: F401  (ConfigError re-exported for callers)
from xlstm_viz.wiring.headers import (  # noqa: F401  (read_header, SUPPORTED_DTYPES re-exported)
    SUPPORTED_DTYPES,
    CheckpointError,
    TensorEntry,
    checkpoint_entries,
    present,
    read_json_object,
    read_header,
    read_text,
    regular_file,
    tensor_bytes,
)

DTYPES = {"float32": mx.float32, "bfloat16": mx.bfloat16, "float16": mx.float16}
# The `xlstm` package names the embedding `embedding.weight`; the 7B checkpoint and transformers use this name.
PACKAGE_RENAMES = {"embedding.weight": "backbone.embeddings.weight"}


class NonFiniteWeightsWarning(UserWarning):
    """A checkpoint loaded with NaN or Inf values in some tensors (the warning names them)."""


def _config_hint(config: XLSTMConfig, found: dict[str, tuple]) -> str:
    emb = found.get("backbone.embeddings.weight")
    hints = []
    if emb is not None and tuple(emb) != (config.vocab_size, config.embedding_dim):
        hints.append(
            f"config.json says vocab_size={config.vocab_size}, embedding_dim={config.embedding_dim} but "
            f"backbone.embeddings.weight is {list(emb)}"
        )
    blocks = {int(k.split(".")[2]) for k in found if k.startswith("backbone.blocks.")}
    if blocks and max(blocks) + 1 != config.num_blocks:
        hints.append(f"config.json says num_blocks={config.num_blocks} but the checkpoint has {max(blocks) + 1} blocks")
    return ("\nthe config contradicts the tensors: " + "; ".join(hints)) if hints else ""


def validate(expected: dict[str, tuple], found: dict[str, tuple], config: XLSTMConfig, folder: Path,
             problems: list[str] = ()) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(found) if tuple(expected[k]) != tuple(found[k]))
    if not (missing or unexpected or mismatched or problems):
        return
    lines = [f"checkpoint {folder} does not match its config.json:", *problems]
    for k in missing:
        lines.append(f"  missing:    {k}  expected shape {list(expected[k])}")
    for k in unexpected:
        hint = f" (xlstm package naming: rename to {PACKAGE_RENAMES[k]})" if k in PACKAGE_RENAMES else ""
        lines.append(f"  unexpected: {k}  shape {list(found[k])}{hint}")
    for k in mismatched:
        lines.append(f"  mis-shaped: {k}  expected {list(expected[k])}, found {list(found[k])}")
    raise CheckpointError("\n".join(lines) + _config_hint(config, found))


def _fused_parts(config: XLSTMConfig, name: str) -> list[tuple[str, int]] | None:
    """For a fused tensor of weight_mode='fused' (weight or bias): the single-mode tensors it concatenates along
    axis 0 (name, rows), in the order of `FUSED_PARAMETERS`, the table `XLSTM.save` fuses by."""
    from xlstm_viz.model.xlstm import FUSED_PARAMETERS

    rows = {"q": config.qk_dim, "k": config.qk_dim, "v": config.v_dim, "ogate_preact": config.v_dim,
            "igate_preact": config.num_heads, "fgate_preact": config.num_heads,
            "proj_up_gate": config.ffn_dim, "proj_up": config.ffn_dim}
    for fused, parts in FUSED_PARAMETERS.items():
        for leaf in ("weight", "bias"):
            if name.endswith(f".{fused}.{leaf}"):
                prefix = name[: -len(f"{fused}.{leaf}")]
                return [(f"{prefix}{part}.{leaf}", rows[part.rsplit(".", 1)[1]]) for part in parts]
    return None


def _single_part_names() -> set[str]:
    from xlstm_viz.model.xlstm import FUSED_PARAMETERS

    return {f"{part}.{leaf}" for parts in FUSED_PARAMETERS.values() for part in parts for leaf in ("weight", "bias")}


def _model_names(config: XLSTMConfig, found: dict[str, tuple]) -> tuple[dict[str, tuple], list[str]]:
    """Checkpoint {name: shape} -> model {name: shape}, and problems that the mapping itself finds."""
    if config.weight_mode != "fused":
        return dict(found), []
    out, problems = {}, []
    single = _single_part_names()
    for name, shape in found.items():
        parts = _fused_parts(config, name)
        if parts is None and name.split(".", 3)[-1] in single and name.startswith("backbone.blocks."):
            problems.append(f"  single-mode tensor in a fused checkpoint: {name}  (config.json says "
                            f"weight_mode 'fused', so it must be part of a fused tensor)")
        elif parts is None:
            out[name] = shape
        elif not shape or shape[0] != sum(rows for _, rows in parts):
            problems.append(f"  mis-shaped: {name}  fused tensor of shape {list(shape)} must have "
                            f"{' + '.join(str(r) for _, r in parts)} = {sum(r for _, r in parts)} rows "
                            f"({', '.join(n.rsplit('.', 2)[-2] for n, _ in parts)})")
        else:
            out.update({part: (rows,) + tuple(shape[1:]) for part, rows in parts})
    return out, problems


def _to_model(config: XLSTMConfig, name: str, w: mx.array) -> list[tuple[str, mx.array]]:
    """One loaded checkpoint tensor -> the model tensor(s) it holds (same mapping as `_model_names`)."""
    parts = _fused_parts(config, name) if config.weight_mode == "fused" else None
    if parts is None:
        return [(name, w)]
    bounds, total = [], 0
    for _, rows in parts[:-1]:
        total += rows
        bounds.append(total)
    return list(zip((n for n, _ in parts), mx.split(w, bounds, axis=0)))


def _lazy_arrays(file: Path, entries: list[TensorEntry]) -> dict[str, mx.array] | None:
    """MLX's own reader for a validated file: `mx.load` returns lazy arrays, each read from the file straight into
    its buffer when evaluated. None for a file it cannot read (F64 tensors), which is then memory-mapped."""
    if any(e.dtype not in ("F32", "F16", "BF16") for e in entries):
        return None
    try:
        return mx.load(str(file))
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise CheckpointError(f"{file}: cannot be read by mx.load ({err})") from None


def _read_tensor(file: Path, entry: TensorEntry, target: mx.Dtype, lazy: dict[str, mx.array] | None) -> mx.array:
    """One tensor in the target dtype, evaluated; nothing else of it outlives this call.

    From `lazy` (taken out of the dict, so that the stored-dtype array is freed once its cast is evaluated: keeping
    the dict alive is what made float32 loading peak at three times a bf16 file), or else memory-mapped: only this
    tensor's file pages are mapped, and only while they are copied."""
    if lazy is not None:
        w = lazy.pop(entry.name)
        if tuple(w.shape) != entry.shape:  # two parsers of one validated header cannot disagree; if they do, say so
            raise CheckpointError(f"{file}: {entry.name} has shape {entry.shape} in its header but mx.load read "
                                  f"{tuple(w.shape)}")
    else:
        raw = tensor_bytes(file, entry)
        if entry.dtype == "F64":  # MLX has no float64 on every device: narrowed (to nearest) as the data is copied
            w = mx.array(raw, dtype=mx.float32)
        else:
            w = mx.array(raw)
            if entry.dtype == "BF16":  # numpy has no bfloat16: the bytes were read as uint16 bit patterns
                w = mx.view(w, mx.bfloat16)
        del raw
    if w.dtype != target:
        w = w.astype(target)
    mx.eval(w)
    return w


def _check_finite(name: str, w: mx.array, bad: dict[str, str]) -> None:
    # A sum is non-finite whenever any term is (NaN, or Inf of either sign), and a reduction needs no temporary the
    # size of the tensor; only then are the values counted (a finite sum that overflows just costs the count).
    if bool(mx.isfinite(mx.sum(w)).item()):
        return
    n = int(mx.sum(mx.logical_not(mx.isfinite(w))).item())
    if n:
        nan = int(mx.sum(mx.isnan(w)).item())
        bad[name] = f"{name} ({nan} NaN, {n - nan} Inf of {w.size})"


def _read_config(folder: Path) -> XLSTMConfig:
    path = folder / "config.json"
    if not present(path):
        raise FileNotFoundError(f"no config.json at {path}")
    read_text(path, "config.json")  # a FIFO, a symlink loop or non-UTF-8 bytes are named here, before parsing
    return XLSTMConfig.from_json(path)


def _is_original_xlstm(folder: Path) -> bool:
    """Whether config.json describes the original xLSTM (`xlstm.xLSTMLMModel`: mlstm_block/slstm_block fields)."""
    from xlstm_viz.model.xlstm_original import is_original_config

    try:
        # Through the same reader as _read_config, so a FIFO or a symlink loop is refused here too, never opened.
        return is_original_config(read_json_object(folder / "config.json", "config.json"))
    except (OSError, ValueError):
        return False  # the xLSTM-Large path below reports a missing or malformed config.json


def load_model(path: str | Path, dtype: str = "float32", progress: bool | None = None, compute_dtype: str = "float32"):
    """Load a checkpoint folder (config.json + model.safetensors, or an index + shards) into an XLSTM model.

    dtype: the weights' dtype in memory. compute_dtype: the dtype of activations and matmuls (states, gate arithmetic
    and norm reductions are float32 in every case): "float32" (default; the exact path the parity tests use),
    "bfloat16", or "auto" (bf16 when the weights are bf16, as the official autocast). README "Compute dtype" gives
    what each costs in accuracy.

    A folder of the original xLSTM (`xlstm.xLSTMLMModel`) is read by its own config and tensor checks
    (xlstm_viz/model/xlstm_original.py) into the same XLSTM class, of "orig_mlstm" / "slstm" blocks."""
    from xlstm_viz.model import XLSTM

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist or is not a folder")
    # --- original xLSTM (xLSTMLMModel): its own config and names, converted to registry blocks ---
    if _is_original_xlstm(folder):
        from xlstm_viz.model.xlstm_original import load_original

        if compute_dtype != "float32":
            raise ValueError(f"the original xLSTM (xLSTMLMModel) computes in float32 only; got compute_dtype="
                             f"{compute_dtype!r}")
        return load_original(folder, dtype=dtype, progress=progress)
    # --- xLSTM-Large / xLSTM-7B ---
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    config = _read_config(folder)
    entries = checkpoint_entries(folder)  # every header validated against its file; no tensor data read yet
    found = {name: entry.shape for name, (_, entry) in entries.items()}

    model = XLSTM(config, compute_dtype=compute_dtype)  # lazy parameters: replaced before they are ever computed
    model.source = str(folder)
    shapes, problems = _model_names(config, found)
    validate(model.checkpoint_shapes(), shapes, config, folder, problems)

    target = DTYPES[dtype]
    by_file: dict[Path, list[TensorEntry]] = {}
    for file, entry in entries.values():
        by_file.setdefault(file, []).append(entry)
    show = progress if progress is not None else len(by_file) > 1
    weights: dict[str, mx.array] = {}
    nonfinite: dict[str, str] = {}
    cache_limit = mx.set_cache_limit(0)  # a staging buffer freed after its cast is returned, not kept for reuse
    try:
        for file in tqdm(sorted(by_file), desc="loading shards", unit="shard", disable=not show):
            lazy = _lazy_arrays(file, by_file[file])
            for entry in sorted(by_file[file], key=lambda e: e.start):  # file order: sequential reads
                w = _read_tensor(file, entry, target, lazy)
                _check_finite(entry.name, w, nonfinite)
                weights.update(_to_model(config, entry.name, w))
    finally:
        mx.set_cache_limit(cache_limit)
    if nonfinite:
        names = sorted(nonfinite)
        warnings.warn(f"checkpoint {folder}: {len(names)} tensors hold NaN/Inf values (loaded as stored): "
                      + "; ".join(nonfinite[n] for n in names[:20]) + (" ..." if len(names) > 20 else ""),
                      NonFiniteWeightsWarning, stacklevel=2)
    model.load_weights(list(weights.items()), strict=True)
    mx.eval(model.parameters())
    tokenizer_file = folder / "tokenizer.json"
    if present(tokenizer_file):
        regular_file(tokenizer_file, "tokenizer.json")
        from tokenizers import Tokenizer

        model.tokenizer = Tokenizer.from_file(str(tokenizer_file))
    return model
