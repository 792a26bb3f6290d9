"""Each notebook executed once per test process (nbclient, the venv's python3 kernel), shared by the tests that
check it: that it runs without errors and in time (tests/test_dashboard_notebooks.py), and that its outputs
rendered to HTML work offline (tests/ui/test_offline_browser.py). A run costs 7-20 s on the 2-core machine."""

from __future__ import annotations

import copy
import functools
import os
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0*_*.ipynb"))


@functools.cache
def _run(path: Path):
    nb = nbformat.read(path, as_version=4)
    # The kernel must get PANEL_INLINE from the notebook's own `import xlstm_viz`, not from this test process; and
    # its session files go to a throw-away cache, not the user's.
    env = {k: v for k, v in os.environ.items() if k != "PANEL_INLINE"}
    env["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="xlstm-viz-nb-")
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute(env=env)
    return nb, time.perf_counter() - t0


def executed(path: Path):
    """(the executed notebook, a copy the caller may change; seconds its run took)."""
    nb, seconds = _run(path)
    return copy.deepcopy(nb), seconds
