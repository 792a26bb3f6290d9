"""Peak memory of `load_model`: the memory-mapped, tensor-by-tensor reader against the former `mx.load` path.

    python benchmarks/load_memory.py [--blocks 8] [--width 1024] [--folder DIR] [--keep]

Writes a synthetic checkpoint (random weights, shapes taken from the model for its config, so `load_model` accepts
it) once as BF16 and once as F32, then loads each in a fresh subprocess per (file dtype, target dtype, reader) and
reads that process's peak resident set (VmHWM of /proc/self/status). Reported: the peak above the process's resident
set just before loading (imports, MLX), as a ratio to the weight bytes in the target dtype: 1.0 is one copy of the
weights. "old" is the loader as it was before the memory-mapped reader (mx.load of each file, astype, load_weights;
copied here as the baseline), "new" is `xlstm_viz.load_model` (lazy mx.load, one tensor at a time), "mmap" is
`load_model` with every file read through its numpy memory-mapped path (the path F64 files take). All loads must give bit-identical parameters (a digest
of every parameter is compared). The page cache holding the file is not counted in either (it is not the process's
memory), but the pages of a memory-mapped tensor are, while they are mapped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def vm(field: str) -> int:
    """A /proc/self/status field in bytes (VmRSS: resident now, VmHWM: peak resident)."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def write_checkpoint(folder: Path, config: dict, dtype: str, seed: int = 0) -> int:
    """config.json + model.safetensors with random weights in `dtype` ('BF16' or 'F32'); returns the file size."""
    import numpy as np

    from xlstm_viz.config import XLSTMConfig
    from xlstm_viz.model import XLSTM

    folder.mkdir(parents=True, exist_ok=True)
    shapes = XLSTM(XLSTMConfig.from_dict(config)).checkpoint_shapes()  # lazy parameters: nothing is allocated
    itemsize = {"BF16": 2, "F32": 4}[dtype]
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape)) * itemsize
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the format's recommended alignment of the buffer
    rng = np.random.default_rng(seed)
    with open(folder / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name, shape in shapes.items():
            w = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
            f.write((w.view(np.uint32) >> 16).astype("<u2").tobytes() if dtype == "BF16" else w.tobytes())
    (folder / "config.json").write_text(json.dumps(config))
    return (folder / "model.safetensors").stat().st_size


def old_load_model(folder: Path, dtype: str):
    """The loader's read path before the memory-mapped reader (xlstm_viz/checkpoint.py at a8d0fff, validation left
    out): mx.load per file, astype, load_weights, with the loaded dict alive until the parameters are evaluated."""
    import mlx.core as mx

    from xlstm_viz.checkpoint import DTYPES
    from xlstm_viz.config import XLSTMConfig
    from xlstm_viz.model import XLSTM

    model = XLSTM(XLSTMConfig.from_json(folder / "config.json"))
    target = DTYPES[dtype]
    weights = {}
    for file in [folder / "model.safetensors"]:
        loaded = mx.load(str(file))
        for name, array in loaded.items():
            weights[name] = array.astype(target) if array.dtype != target else array
    model.load_weights(list(weights.items()), strict=True)
    mx.eval(model.parameters())
    return model


def child(folder: Path, dtype: str, reader: str) -> None:
    import xlstm_viz.blas  # noqa: F401
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten

    import xlstm_viz
    import xlstm_viz.checkpoint  # noqa: F401  (everything load_model imports, so that `before` counts it)
    import xlstm_viz.model  # noqa: F401

    if reader == "mmap":  # every file through the numpy memory-mapped path (the one F64 files take)
        xlstm_viz.checkpoint._lazy_arrays = lambda file, entries: None
    before = vm("VmRSS")
    model = old_load_model(folder, dtype) if reader == "old" else xlstm_viz.load_model(folder, dtype=dtype)
    peak = vm("VmHWM")
    params = tree_flatten(model.parameters())
    nbytes = sum(p.nbytes for _, p in params)
    digest = hashlib.sha256()
    for name, p in sorted(params):
        digest.update(name.encode())
        digest.update(np.array(p.view(mx.uint16) if p.dtype == mx.bfloat16 else p).tobytes())
    print(json.dumps({"before": before, "peak": peak, "weights": nbytes, "digest": digest.hexdigest()}))


def measure(folder: Path, dtype: str, reader: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(folder), dtype, reader],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--folder", type=Path, help="where to write the checkpoints (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the written checkpoints")
    parser.add_argument("--child", nargs=3, metavar=("FOLDER", "DTYPE", "READER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1], args.child[2])
        return

    config = {"embedding_dim": args.width, "num_heads": 4, "num_blocks": args.blocks, "vocab_size": args.vocab}
    root = args.folder or Path(tempfile.mkdtemp(prefix="load_memory_"))
    try:
        sizes = {d: write_checkpoint(root / d, config, d) for d in ("BF16", "F32")}
        print(f"config {config}; files: " + ", ".join(f"{d} {s / 2**20:.0f} MiB" for d, s in sizes.items()))
        print("peak memory of loading / weight bytes in the target dtype (1.00 = one copy of the weights)")
        print(f"{'file':>5} {'target':>9} {'weights MiB':>11} {'old':>6} {'new':>6} {'mmap':>6} {'new/old':>7}  identical")
        for file_dtype, target in (("BF16", "float32"), ("F32", "float32"), ("BF16", "bfloat16")):
            runs = {r: measure(root / file_dtype, target, r) for r in ("old", "new", "mmap")}
            ratio = {r: (m["peak"] - m["before"]) / m["weights"] for r, m in runs.items()}
            same = len({m["digest"] for m in runs.values()}) == 1
            print(f"{file_dtype:>5} {target:>9} {runs['new']['weights'] / 2**20:11.0f} {ratio['old']:6.3f} "
                  f"{ratio['new']:6.3f} {ratio['mmap']:6.3f} {ratio['new'] / ratio['old']:7.2f}  {same}")
            if not same:
                raise SystemExit(f"{file_dtype} -> {target}: the readers' parameters differ")
        new = runs["new"]
        print(f"(peak = VmHWM minus VmRSS before loading; process RSS before loading was about "
              f"{new['before'] / 2**20:.0f} MiB)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
