"""xlstm_viz.blas.tune_malloc: applied by the first model a process builds, never by `import xlstm_viz`.

Each case runs in a fresh interpreter (the settings are process-wide and glibc cannot report them) and observes
what they do: whether glibc serves a 64 MiB malloc with its own mmap (mallinfo2's hblks), whether a freed one is
trimmed from the heap, and how many page faults MLX's second 100 MB result costs.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _glibc_with_mallinfo2() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc >= 2.33 (mallopt, mallinfo2)")

SCRIPT = """
import ctypes, json, resource, sys
sys.path.insert(0, {root!r})
import xlstm_viz, xlstm_viz.checkpoint, xlstm_viz.model  # everything a user imports before building a model
import xlstm_viz.blas as blas
import mlx.core as mx

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc.mallinfo2.restype = MallInfo2

def build():
    from xlstm_viz.config import XLSTMConfig
    from xlstm_viz.model import XLSTM
    return XLSTM(XLSTMConfig(embedding_dim=32, num_heads=2, num_blocks=1, vocab_size=64))

{setup}

big = 64 << 20  # above glibc's largest dynamic mmap threshold (32 MiB on 64-bit)
before = libc.mallinfo2()
p = libc.malloc(big)
during = libc.mallinfo2()
ctypes.memset(p, 1, big)
libc.free(p)
after = libc.mallinfo2()

a = mx.random.normal((512, 50304))
mx.eval(a)
mx.eval(a * 2.0)  # the first result of this size faults its pages in either way
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
mx.eval(a * 2.0)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(json.dumps({{
    "tuned": blas.malloc_tuned,
    "mmapped": during.hblks - before.hblks,  # 1: glibc mapped the block itself; 0: it came from the heap
    "kept": after.arena >= big,  # the freed block stayed in the heap (not trimmed)
    "faults": faults,
}}))
"""

PAGES = 512 * 50304 * 4 // 4096  # 25,152 pages of 4 KiB in one MLX result


def _run(setup: str = "", **env) -> dict:
    env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(root=str(ROOT), setup=setup)], capture_output=True,
                         text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _glibc_defaults(r: dict) -> None:
    assert not r["tuned"]
    assert r["mmapped"] == 1, "a 64 MiB malloc came from the heap: something changed M_MMAP_MAX"
    assert r["faults"] > PAGES // 2, f"only {r['faults']} page faults for a fresh {PAGES}-page result"


def _tuned(r: dict) -> None:
    assert r["tuned"]
    assert r["mmapped"] == 0, "a 64 MiB malloc got its own mmap: M_MMAP_MAX=0 is not in effect"
    assert r["kept"], "the freed 64 MiB block was trimmed from the heap: M_TRIM_THRESHOLD is not in effect"
    assert r["faults"] < PAGES // 10, f"{r['faults']} page faults for a result of {PAGES} pages: mapped afresh"


def test_importing_xlstm_viz_leaves_glibcs_malloc_settings_alone():
    _glibc_defaults(_run(XLSTM_VIZ_MALLOC=None))


def test_building_a_model_keeps_large_blocks_in_the_heap():
    _tuned(_run("model = build()", XLSTM_VIZ_MALLOC=None))


def test_loading_a_model_keeps_large_blocks_in_the_heap():
    checkpoint = ROOT / "tests" / "fixtures" / "golden" / "d96"
    _tuned(_run(f"model = xlstm_viz.load_model({str(checkpoint)!r})", XLSTM_VIZ_MALLOC=None))


def test_malloc_off_keeps_glibcs_defaults_for_a_built_model():
    _glibc_defaults(_run("model = build()", XLSTM_VIZ_MALLOC="off"))


def test_only_the_first_model_of_a_process_sets_malloc():
    # a user who sets mallopt after the first model keeps their setting when more models are built
    r = _run("model = build(); libc.mallopt(-4, 65536); model2 = build()", XLSTM_VIZ_MALLOC=None)
    assert r["tuned"]  # what the first call did
    assert r["mmapped"] == 1, "the second model set M_MMAP_MAX=0 again over the user's setting"
