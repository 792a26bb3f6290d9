"""A process that builds a dashboard session, or serves the app, exits cleanly: exit code 0 and no native abort.

Before the exit hook in xlstm_viz/dashboard/session.py, a script that left a session open ended with "terminate called
without an active exception" and exit code 134 in about 9 of 10 runs (a model thread's MLX thread-local destructor
taking the GIL while the interpreter was finalizing). Each script runs several times because the abort is a race.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNS = 3

LEAVE_OPEN = """
import xlstm_viz
from xlstm_viz.dashboard.session import ModelSession
s = ModelSession(threaded={threaded})
s.mqar_example(4, 0)  # threaded: still running when the script ends
print("session ran")
"""

SERVE_BRIEFLY = """
import socket, time, urllib.request
import xlstm_viz
from xlstm_viz.dashboard.app import serve
with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
server = serve(port=port, threaded=True)  # the page request below builds a DashboardApp and its model thread
try:
    for _ in range(600):
        try:
            html = urllib.request.urlopen(f"http://localhost:{port}/", timeout=120).read().decode()
            break
        except OSError:
            time.sleep(0.1)
    assert "xlstm-viz" in html
    print("served")
finally:
    server.stop()
"""


def run_script(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "PYTHONFAULTHANDLER": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("threaded", [False, True])
def test_a_script_that_leaves_a_session_open_exits_cleanly(threaded, tmp_path):
    for _ in range(RUNS):
        proc = run_script(LEAVE_OPEN.format(threaded=threaded), tmp_path)
        assert "session ran" in proc.stdout, proc.stderr[-3000:]
        assert "terminate called" not in proc.stderr, proc.stderr[-3000:]
        assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])


def test_serving_the_app_briefly_exits_cleanly(tmp_path):
    for _ in range(RUNS):
        proc = run_script(SERVE_BRIEFLY, tmp_path)
        assert "served" in proc.stdout, proc.stderr[-3000:]
        assert "terminate called" not in proc.stderr, proc.stderr[-3000:]
        assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
