"""The dashboard server runs OpenBLAS with one thread; the library elsewhere keeps OpenBLAS's default.

With OpenBLAS's default (one thread per core), its idle workers spun after each of the demo model's small products,
on the cores the browsers need. In a subprocess, because the setting is process-wide.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xlstm_viz import blas

ROOT = Path(__file__).resolve().parents[1]

SERVE = """
import socket
import xlstm_viz
from xlstm_viz import blas
from xlstm_viz.dashboard.app import serve
blas.set_threads(2)
before = blas.threads()
with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
server = serve(port=port, threaded=True{extra})
try:
    print("threads", before, blas.threads())
finally:
    server.stop()
"""


def threads_before_and_after_serve(tmp_path: Path, extra: str = "") -> tuple[int, int]:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(SERVE.format(extra=extra))], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("threads")), None)
    assert line is not None, proc.stderr[-3000:]
    _, before, after = line.split()
    return int(before), int(after)


needs_openblas = pytest.mark.skipif(blas.threads() is None, reason="xlstm_viz loaded no OpenBLAS here")


@needs_openblas
def test_serving_the_dashboard_sets_one_blas_thread(tmp_path):
    before, after = threads_before_and_after_serve(tmp_path)
    assert after == 1, (before, after)


@needs_openblas
def test_serve_blas_threads_none_keeps_the_process_setting(tmp_path):
    before, after = threads_before_and_after_serve(tmp_path, ", blas_threads=None")
    assert after == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1"])
def test_a_bad_blas_thread_count_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="BLAS thread count"):
        blas.set_threads(bad)
