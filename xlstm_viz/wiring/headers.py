"""Safetensors checkpoint files, read and validated from their headers (no tensor data unless asked).

A safetensors file starts with an 8-byte little-endian header length N, then N bytes of JSON
{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}, then the tensor bytes. The format requires the
byte buffer to be covered exactly once: tensors laid out back to back from offset 0, each `prod(shape) * itemsize`
bytes long, ending at the end of the file. Everything here is checked before any tensor byte is read, and every
problem is a `CheckpointError` that names the file and the tensor or key. Reading just the headers is what keeps
`BlockWiring.from_checkpoint` fast on a 7B checkpoint; `tensor_bytes` then maps one tensor's bytes at a time.

This module has no MLX dependency (the wiring package is usable without a model).
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
_MAX_HEADER = 100 * 2**20  # real headers are kilobytes; a bigger claim means a corrupt or foreign file

# safetensors dtype -> numpy dtype of its raw bytes. numpy has no bfloat16: BF16 is read as its uint16 bit pattern
# and reinterpreted by the loader. F64 is accepted and narrowed to float32 by the loader (MLX has no float64 on
# every device); integer and 8-bit float dtypes are not model weights here and are rejected with the tensor named.
STORAGE = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"), "F64": np.dtype("<f8")}
SUPPORTED_DTYPES = tuple(STORAGE)


class CheckpointError(ValueError):
    """A checkpoint file or folder that cannot be read as the model it claims to be (names file, key and value)."""


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a safetensors file: where its bytes are (absolute offsets into the file) and what they hold."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    data_offsets: tuple[int, int]  # as in the header: relative to the end of the header
    base: int  # 8 + header length: where the byte buffer starts in the file

    @property
    def start(self) -> int:
        return self.base + self.data_offsets[0]

    @property
    def stop(self) -> int:
        return self.base + self.data_offsets[1]

    @property
    def nbytes(self) -> int:
        return self.data_offsets[1] - self.data_offsets[0]


_FILE_KINDS = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]


def regular_file(path, what: str = "file") -> os.stat_result:
    """stat() of `path`, which must be an existing regular file (symlinks followed).

    Checked before any open(): opening a FIFO blocks until a writer appears, so a pipe in place of the weights
    would hang the loader forever instead of failing.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise CheckpointError(f"{what} {path} is a symlink to {os.readlink(path)!r}, which does not exist") from None
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise CheckpointError(f"{what} {path} is a symlink loop (too many levels of symbolic links)") from None
        raise CheckpointError(f"{what} {path} cannot be accessed: {err.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((k for test, k in _FILE_KINDS if test(st.st_mode)), "not a regular file")
        raise CheckpointError(f"{what} {path} is {kind}, not a regular file")
    return st


def present(path) -> bool:
    """Whether a directory entry exists at `path`, even a broken symlink or a loop (Path.exists() says False for
    those, which made the loader report 'no model.safetensors' for a folder listing one)."""
    return os.path.lexists(path)


def read_text(path, what: str = "file") -> str:
    """The UTF-8 text of a regular file; a FIFO, a symlink loop or bytes that are not UTF-8 are named errors."""
    path = Path(path)
    regular_file(path, what)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CheckpointError(
            f"{what} {path} is not UTF-8 text: byte {raw[err.start]:#04x} at offset {err.start} ({err.reason})"
        ) from None


def read_json_object(path, what: str = "file") -> dict:
    text = read_text(path, what)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{what} {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{what} {path} must hold a JSON object, got a JSON {_json_kind(data)}: {data!r:.60}")
    return data


def _json_kind(value) -> str:
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), "null")


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise CheckpointError(f"duplicate keys {dup}")
    return dict(pairs)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def read_entries(path, data: bool = True) -> dict[str, TensorEntry]:
    """{tensor name: TensorEntry} of one .safetensors file (`__metadata__` dropped), fully validated.

    With data=True the tensors must also fit the file exactly (the loader); data=False checks the header alone, for
    header-only readers such as `BlockWiring.from_checkpoint`.
    """
    path = Path(path)
    size = regular_file(path, "safetensors file").st_size
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path}: file is {size} bytes, too short to be safetensors (truncated?)")
        (length,) = struct.unpack("<Q", prefix)
        if length > _MAX_HEADER:
            raise CheckpointError(f"{path}: header length {length} is implausible; not a safetensors file?")
        raw = f.read(length)
    if len(raw) < length:
        raise CheckpointError(f"{path}: header claims {length} bytes but the file ends after {len(raw)} (truncated)")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: header is not valid JSON ({err}): corrupt file") from None
    except CheckpointError as err:
        raise CheckpointError(f"{path}: header has {err}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header must be a JSON object of tensors, got a JSON {_json_kind(header)}: "
                              f"{header!r:.60}")
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise CheckpointError(f"{path}: '__metadata__' must be an object of strings, got {meta!r}")

    base = 8 + length
    problems, entries = [], {}
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            problems.append(f"  {name}: malformed entry {info!r} (needs exactly dtype, shape, data_offsets)")
            continue
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in STORAGE:
            problems.append(f"  {name}: dtype {dtype!r} is not supported (supported: {list(SUPPORTED_DTYPES)})")
            continue
        if not (isinstance(shape, list) and all(_is_int(d) and d >= 0 for d in shape)):
            problems.append(f"  {name}: shape {shape!r} is not a list of non-negative integers")
            continue
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            problems.append(f"  {name}: data_offsets {offsets!r} is not a pair of integers [start, stop], 0 <= start <= stop")
            continue
        need = math.prod(shape) * STORAGE[dtype].itemsize
        if offsets[1] - offsets[0] != need:
            problems.append(f"  {name}: data_offsets {offsets} span {offsets[1] - offsets[0]} bytes but {dtype} "
                            f"{shape} needs {need}")
            continue
        entries[name] = TensorEntry(name, dtype, tuple(shape), (offsets[0], offsets[1]), base)

    if not problems:  # the byte buffer must be covered exactly once, in order: no overlap, no hole
        end, prev = base, None
        for e in sorted(entries.values(), key=lambda e: (e.start, e.stop)):
            if e.start < end:
                problems.append(f"  {e.name}: bytes [{e.start - base}, {e.stop - base}) overlap {prev.name} "
                                f"[{prev.start - base}, {prev.stop - base}): two tensors would share data")
            elif e.start > end:
                problems.append(f"  {e.name}: starts at {e.start - base} but the previous tensor ends at {end - base}: "
                                f"{e.start - end} bytes belong to no tensor")
            if e.stop >= end:
                end, prev = e.stop, e
        if data and not problems and end != size:
            if end > size:
                beyond = [e.name for e in entries.values() if e.stop > size]
                problems.append(f"  file is {size} bytes but its tensors need {end}: truncated; tensors past the end: "
                                + ", ".join(beyond[:10]) + (" ..." if len(beyond) > 10 else ""))
            else:
                problems.append(f"  file is {size} bytes but its tensors end at {end}: {size - end} trailing bytes")
    if problems:
        raise CheckpointError(f"{path} is not a valid safetensors file:\n" + "\n".join(problems))
    if data:
        _library_agrees(path)
    return entries


def _library_agrees(path: Path) -> None:
    """The reference parser (the `safetensors` package) must accept what the checks above accepted: a second
    opinion on the format, so a rule missed here cannot let a malformed file through. It maps the file; no data is
    read. Header-only files (data=False) have no buffer, which it would rightly refuse."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy"):
            pass
    except SafetensorError as err:
        raise CheckpointError(f"{path} is refused by the safetensors library: {err}") from None


def read_header(path) -> dict[str, dict]:
    """{tensor name: {"dtype", "shape", "data_offsets"}} of one .safetensors file, validated without its data."""
    return {n: {"dtype": e.dtype, "shape": list(e.shape), "data_offsets": list(e.data_offsets)}
            for n, e in read_entries(path, data=False).items()}


def tensor_bytes(path, entry: TensorEntry) -> np.ndarray:
    """The stored values of one tensor as a read-only, memory-mapped numpy array in its storage dtype (BF16 as
    uint16 bit patterns). Only this tensor's pages are mapped, and they are unmapped when the array is dropped,
    so a loader that copies tensors one at a time holds one tensor of file pages at a time."""
    dtype = STORAGE[entry.dtype]
    if entry.nbytes == 0:
        return np.zeros(entry.shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=entry.start, shape=entry.shape)


def checkpoint_entries(folder, data: bool = True) -> dict[str, tuple[Path, TensorEntry]]:
    """{tensor name: (file, entry)} of a checkpoint folder: model.safetensors.index.json and its shards, or a single
    model.safetensors. The index must map names to shard files of this folder, every mapped name must be in its
    shard, and every tensor of a shard must be mapped to it."""
    folder = Path(folder)
    index_path = folder / INDEX_NAME
    if present(index_path):
        index = read_json_object(index_path, "safetensors index")
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index_path}: 'weight_map' must be an object {{tensor name: shard file}}, "
                                  f"got {type(weight_map).__name__}: {weight_map!r:.80}")
        bad = {k: v for k, v in weight_map.items()
               if not (isinstance(v, str) and v and Path(v).name == v and v not in (".", ".."))}
        if bad:
            raise CheckpointError(f"{index_path}: 'weight_map' values must be file names in this folder; "
                                  f"bad entries: {dict(list(bad.items())[:5])}")
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not present(folder / s)]
        if missing:
            raise CheckpointError(f"{index_path} names shard files that do not exist: {missing}")
        out, problems = {}, []
        for shard in shards:
            entries = read_entries(folder / shard, data=data)
            for name, entry in entries.items():
                if weight_map.get(name) != shard:
                    problems.append(f"  {name}: stored in {shard} but the index maps it to {weight_map.get(name)}")
                else:
                    out[name] = (folder / shard, entry)
            for name in sorted(n for n, s in weight_map.items() if s == shard and n not in entries):
                problems.append(f"  {name!r} is mapped to {shard} by the index but that shard has no such tensor")
        if problems:
            raise CheckpointError(f"{index_path} and its shards disagree:\n" + "\n".join(problems))
        return out
    single = folder / SINGLE_NAME
    if present(single):
        return {name: (single, e) for name, e in read_entries(single, data=data).items()}
    raise FileNotFoundError(f"{folder} has neither {SINGLE_NAME} nor {INDEX_NAME} "
                            f"(it holds: {sorted(p.name for p in folder.iterdir())})")


def checkpoint_shapes(folder) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} of a checkpoint folder, from the index and shard headers only (no tensor data)."""
    return {name: entry.shape for name, (_, entry) in checkpoint_entries(folder, data=False).items()}
