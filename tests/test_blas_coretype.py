"""The OpenBLAS kernels xlstm_viz.blas gets: a modern CPU must not run OpenBLAS's SSE-era fallback.

OpenBLAS 0.3.21 did not recognise the CI machine's Xeon (family 6, model 207) and ran its 'Prescott' kernels, 7x
slower float32 products on one thread; `_coretype_hint` forces SkylakeX on Intel AVX-512 CPUs. Each case loads the
library in a fresh interpreter (OpenBLAS reads OPENBLAS_CORETYPE once, when it is loaded) and asks OpenBLAS itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import xlstm_viz.blas as blas

ROOT = Path(__file__).resolve().parents[1]

# OpenBLAS x86 core names without AVX2/FMA kernels
PRE_AVX2 = {"Katmai", "Coppermine", "Northwood", "Prescott", "Banias", "Atom", "Core2", "Penryn", "Dunnington",
            "Nehalem", "Sandybridge", "Opteron", "Opteron_SSE3", "Barcelona", "Bobcat", "Bulldozer", "Piledriver",
            "Steamroller", "Excavator"}

SCRIPT = f"""
import json, os, sys
sys.path.insert(0, {str(ROOT)!r})
import xlstm_viz.blas as blas
print(json.dumps({{"core": blas.core, "forced": blas.core_forced, "env": os.environ.get("OPENBLAS_CORETYPE")}}))
"""


def _flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return set()


def _load(**env) -> dict:
    env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


needs_openblas = pytest.mark.skipif(blas.core is None, reason="no OpenBLAS loaded (not Linux, or not installed)")


@needs_openblas
@pytest.mark.skipif(not {"avx2", "fma"} <= _flags(), reason="a CPU without AVX2/FMA: the old kernels are its own")
def test_a_cpu_with_avx2_gets_openblas_kernels_that_use_it():
    r = _load(OPENBLAS_CORETYPE=None)
    assert r["core"] not in PRE_AVX2, f"OpenBLAS runs its {r['core']} kernels on a CPU with AVX2 and FMA"
    assert r["env"] is None, "OPENBLAS_CORETYPE was left in the environment"


@needs_openblas
@pytest.mark.skipif(blas._coretype_hint() is None and "OPENBLAS_CORETYPE" not in os.environ,
                    reason="not an Intel AVX-512 CPU: OpenBLAS's own detection is kept")
def test_an_intel_avx512_cpu_gets_the_skylakex_kernels():
    r = _load(OPENBLAS_CORETYPE=None)
    assert (r["core"], r["forced"]) == ("SkylakeX", "SkylakeX")


@needs_openblas
def test_the_users_openblas_coretype_is_kept():
    r = _load(OPENBLAS_CORETYPE="Haswell")
    assert (r["core"], r["forced"], r["env"]) == ("Haswell", None, "Haswell")
