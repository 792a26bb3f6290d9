"""Tensor names and shapes of a safetensors checkpoint, read from the file headers only (no tensor data).

A safetensors file starts with an 8-byte little-endian header length N, then N bytes of JSON
{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}. Reading just that is what keeps
`BlockWiring.from_checkpoint` fast on a 7B checkpoint.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
_MAX_HEADER = 100 * 2**20  # real headers are kilobytes; a bigger claim means a corrupt or foreign file


def read_header(path) -> dict[str, dict]:
    """{tensor name: {"dtype", "shape", "data_offsets"}} of one .safetensors file, `__metadata__` dropped."""
    path = Path(path)
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{path}: too short to be a safetensors file ({len(prefix)} bytes)")
        (length,) = struct.unpack("<Q", prefix)
        if length > _MAX_HEADER:
            raise ValueError(f"{path}: header length {length} is implausible; not a safetensors file?")
        raw = f.read(length)
    if len(raw) < length:
        raise ValueError(f"{path}: header claims {length} bytes but the file ends after {len(raw)}")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: safetensors header is not valid JSON: {err}") from None
    header.pop("__metadata__", None)
    return header


def checkpoint_shapes(folder) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} of a checkpoint folder: model.safetensors.index.json and its shards, or a
    single model.safetensors. Every name in the index must be in the shard it points to."""
    folder = Path(folder)
    index_path = folder / INDEX_NAME
    if index_path.exists():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{index_path}: not a safetensors index with a 'weight_map' ({err})") from None
        by_shard: dict[str, list[str]] = {}
        for name, shard in weight_map.items():
            by_shard.setdefault(shard, []).append(name)
        shapes = {}
        for shard, names in by_shard.items():
            header = read_header(folder / shard)
            for name in names:
                if name not in header:
                    raise ValueError(f"{index_path}: tensor {name!r} is mapped to {shard} but that shard has no such tensor")
                shapes[name] = tuple(header[name]["shape"])
        return shapes
    single = folder / SINGLE_NAME
    if single.exists():
        return {name: tuple(entry["shape"]) for name, entry in read_header(single).items()}
    raise FileNotFoundError(f"{folder}: no {INDEX_NAME} and no {SINGLE_NAME}")
