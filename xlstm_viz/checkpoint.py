"""Load NX-AI xLSTM checkpoint folders strictly: config.json + model.safetensors or an index with shards.

Everything is checked against the safetensors headers before any tensor data is read, and all problems are reported
together in one `CheckpointError`: missing, unexpected and mis-shaped tensors (expected vs found shape), truncated or
corrupt files, unknown dtypes, and a config that contradicts the tensor shapes. Tensor data is then read by
`mx.load`, shard by shard, with a tqdm bar over shards.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import xlstm_viz.blas  # noqa: F401  (fast BLAS must be bound before MLX loads)
import mlx.core as mx
from tqdm.auto import tqdm

from xlstm_viz.config import ConfigError, XLSTMConfig

SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}
DTYPES = {"float32": mx.float32, "bfloat16": mx.bfloat16, "float16": mx.float16}
# The `xlstm` package names the embedding `embedding.weight`; the 7B checkpoint and transformers use this name.
PACKAGE_RENAMES = {"embedding.weight": "backbone.embeddings.weight"}


class CheckpointError(ValueError):
    """A checkpoint that does not match the model its config.json describes (lists every offending key)."""


def read_header(path: str | Path) -> dict[str, dict]:
    """Tensor name -> {dtype, shape, data_offsets} from a safetensors file, reading only its header.

    Raises CheckpointError for a file that is too short, has a corrupt header, or whose tensors extend past its end.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path.name}: file is {size} bytes, too short to be safetensors (truncated?)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100 * 2**20:
            raise CheckpointError(f"{path.name}: header length {n} exceeds the file size {size} (corrupt or truncated)")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path.name}: header is not valid JSON ({err}): corrupt file") from None
    header.pop("__metadata__", None)
    problems, end = [], 0
    for name, info in header.items():
        try:
            start, stop = info["data_offsets"]
            dtype, shape = info["dtype"], info["shape"]
        except (KeyError, TypeError, ValueError):
            problems.append(f"  {name}: malformed header entry {info!r}")
            continue
        if dtype not in SAFETENSORS_DTYPES:
            problems.append(f"  {name}: dtype {dtype} is not supported (supported: {sorted(SAFETENSORS_DTYPES)})")
        end = max(end, stop)
    if 8 + n + end > size:
        beyond = [k for k, v in header.items() if 8 + n + v["data_offsets"][1] > size]
        problems.append(
            f"  file is {size} bytes but its tensors need {8 + n + end}: truncated; tensors past the end: "
            + ", ".join(beyond[:10]) + (" ..." if len(beyond) > 10 else "")
        )
    if problems:
        raise CheckpointError(f"{path.name} is not a valid safetensors file:\n" + "\n".join(problems))
    return header


def checkpoint_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> file holding it, from model.safetensors or model.safetensors.index.json."""
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CheckpointError(f"{index.name}: cannot read 'weight_map' ({err!r})") from None
        missing_files = sorted({f for f in weight_map.values() if not (folder / f).exists()})
        if missing_files:
            raise CheckpointError(f"{index.name} names shard files that do not exist: {missing_files}")
        return {name: folder / f for name, f in weight_map.items()}
    if single.exists():
        return {name: single for name in read_header(single)}
    present = sorted(p.name for p in folder.iterdir())
    raise FileNotFoundError(
        f"{folder} has neither model.safetensors nor model.safetensors.index.json (it holds: {present})"
    )


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


def validate(expected: dict[str, tuple], found: dict[str, tuple], config: XLSTMConfig, folder: Path) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(found) if tuple(expected[k]) != tuple(found[k]))
    if not (missing or unexpected or mismatched):
        return
    lines = [f"checkpoint {folder} does not match its config.json:"]
    for k in missing:
        lines.append(f"  missing:    {k}  expected shape {list(expected[k])}")
    for k in unexpected:
        hint = f" (xlstm package naming: rename to {PACKAGE_RENAMES[k]})" if k in PACKAGE_RENAMES else ""
        lines.append(f"  unexpected: {k}  shape {list(found[k])}{hint}")
    for k in mismatched:
        lines.append(f"  mis-shaped: {k}  expected {list(expected[k])}, found {list(found[k])}")
    raise CheckpointError("\n".join(lines) + _config_hint(config, found))


def _split_fused(config: XLSTMConfig, found: dict[str, tuple]) -> dict[str, tuple]:
    """Shapes of the single-mode tensors that the fused ones (weight_mode='fused') split into."""
    D, NH, qk, v, F = config.embedding_dim, config.num_heads, config.qk_dim, config.v_dim, config.ffn_dim
    out = {}
    for name, shape in found.items():
        if name.endswith("mlstm_layer.qkv_opreact.weight"):
            p = name[: -len("qkv_opreact.weight")]
            out.update({p + "q.weight": (qk, D), p + "k.weight": (qk, D), p + "v.weight": (v, D),
                        p + "ogate_preact.weight": (v, D)})
        elif ".mlstm_layer.ifgate_preact." in name:
            p, leaf = name.rsplit("ifgate_preact.", 1)
            out.update({p + "igate_preact." + leaf: (NH,) + tuple(shape[1:]), p + "fgate_preact." + leaf: (NH,) + tuple(shape[1:])})
        elif name.endswith("ffn.proj_up_gate_z.weight"):
            p = name[: -len("proj_up_gate_z.weight")]
            out.update({p + "proj_up_gate.weight": (F, D), p + "proj_up.weight": (F, D)})
        else:
            out[name] = shape
    return out


def _unfuse(config: XLSTMConfig, weights: dict[str, mx.array]) -> dict[str, mx.array]:
    qk, v, NH, F = config.qk_dim, config.v_dim, config.num_heads, config.ffn_dim
    out = {}
    for name, w in weights.items():
        if name.endswith("mlstm_layer.qkv_opreact.weight"):
            p = name[: -len("qkv_opreact.weight")]
            q, k, vv, o = mx.split(w, [qk, 2 * qk, 2 * qk + v], axis=0)
            out.update({p + "q.weight": q, p + "k.weight": k, p + "v.weight": vv, p + "ogate_preact.weight": o})
        elif ".mlstm_layer.ifgate_preact." in name:
            p, leaf = name.rsplit("ifgate_preact.", 1)
            out[p + "igate_preact." + leaf], out[p + "fgate_preact." + leaf] = mx.split(w, [NH], axis=0)
        elif name.endswith("ffn.proj_up_gate_z.weight"):
            p = name[: -len("proj_up_gate_z.weight")]
            out[p + "proj_up_gate.weight"], out[p + "proj_up.weight"] = mx.split(w, [F], axis=0)
        else:
            out[name] = w
    return out


def _is_original_xlstm(folder: Path) -> bool:
    """Whether config.json describes the original xLSTM (`xlstm.xLSTMLMModel`: mlstm_block/slstm_block fields)."""
    from xlstm_viz.model.xlstm_original import is_original_config

    try:
        return is_original_config(json.loads((folder / "config.json").read_text()))
    except (OSError, ValueError):
        return False  # the xLSTM-Large path below reports a missing or malformed config.json


def load_model(path: str | Path, dtype: str = "float32", progress: bool | None = None):
    """Load a checkpoint folder (config.json + model.safetensors, or an index + shards) into an XLSTM model.

    A folder of the original xLSTM (`xlstm.xLSTMLMModel`) loads into `OriginalXLSTM` instead
    (xlstm_viz/model/xlstm_original.py), with the same strict checks."""
    from xlstm_viz.model import XLSTM

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist or is not a folder")
    # --- original xLSTM (xLSTMLMModel): its own config, names and model; delegated whole ---
    if _is_original_xlstm(folder):
        from xlstm_viz.model.xlstm_original import load_original

        return load_original(folder, dtype=dtype)
    # --- xLSTM-Large / xLSTM-7B ---
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    config = XLSTMConfig.from_json(folder / "config.json")
    files = checkpoint_files(folder)

    headers = {f: read_header(f) for f in sorted(set(files.values()))}
    found: dict[str, tuple] = {}
    problems = []
    for name, file in files.items():
        info = headers[file].get(name)
        if info is None:
            problems.append(f"  {name}: listed in the index for {file.name} but not in that file")
            continue
        found[name] = tuple(info["shape"])
    for file, header in headers.items():
        for name in header:
            if files.get(name) != file:
                problems.append(f"  {name}: stored in {file.name} but the index does not map it there")
    if problems:
        raise CheckpointError(f"checkpoint {folder} index and shards disagree:\n" + "\n".join(problems))

    model = XLSTM(config)
    model.source = str(folder)
    expected = model.checkpoint_shapes()
    validate(expected, _split_fused(config, found) if config.weight_mode == "fused" else found, config, folder)

    target = DTYPES[dtype]
    show = progress if progress is not None else len(headers) > 1
    weights: dict[str, mx.array] = {}
    for file in tqdm(sorted(headers), desc="loading shards", unit="shard", disable=not show):
        try:
            loaded = mx.load(str(file))
        except Exception as err:  # noqa: BLE001 - re-raised with the file named
            raise CheckpointError(f"{file.name}: cannot be read by mx.load ({err})") from None
        for name, array in loaded.items():
            weights[name] = array.astype(target) if array.dtype != target else array
    if config.weight_mode == "fused":
        weights = _unfuse(config, weights)
    model.load_weights(list(weights.items()), strict=True)
    mx.eval(model.parameters())
    tokenizer_file = folder / "tokenizer.json"
    if tokenizer_file.exists():
        from tokenizers import Tokenizer

        model.tokenizer = Tokenizer.from_file(str(tokenizer_file))
    return model
