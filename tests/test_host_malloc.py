"""xlstm_viz.blas.tune_malloc: MLX's large CPU results reuse freed heap memory instead of faulting in fresh pages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import xlstm_viz.blas as blas

ROOT = Path(__file__).resolve().parents[1]

# One 100 MB float32 product twice (the D=1024 logits' size); prints the page faults of the second.
SCRIPT = """
import resource, sys
sys.path.insert(0, {root!r})
import xlstm_viz.blas as blas
import mlx.core as mx
a = mx.random.normal((512, 50304))
mx.eval(a)
mx.eval(a * 2.0)  # the first result of this size faults its pages in either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
mx.eval(a * 2.0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, blas.malloc_tuned)
"""

PAGES = 512 * 50304 * 4 // 4096  # 25,152 pages of 4 KiB in one result


def _second_result_faults(**env) -> tuple[int, bool]:
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(root=str(ROOT))], capture_output=True, text=True,
                         check=True, env={**os.environ, **env}, timeout=120)
    faults, tuned = out.stdout.split()
    return int(faults), tuned == "True"


@pytest.mark.skipif(not blas.malloc_tuned, reason="not glibc on Linux: malloc is not tuned")
def test_a_large_result_reuses_the_freed_block_of_the_last_one():
    faults, tuned = _second_result_faults()
    assert tuned
    assert faults < PAGES // 10, f"{faults} page faults for a result of {PAGES} pages: its memory was mapped afresh"


@pytest.mark.skipif(not blas.malloc_tuned, reason="not glibc on Linux: malloc is not tuned")
def test_switching_malloc_tuning_off_brings_back_glibcs_fresh_mappings():
    faults, tuned = _second_result_faults(XLSTM_VIZ_MALLOC="off")
    assert not tuned
    assert faults > PAGES // 2, f"only {faults} page faults with glibc's defaults: the test no longer measures anything"
