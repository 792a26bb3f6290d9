"""The README's Python examples that print their output next to them run as written and print exactly that."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _examples():
    """(code, shown output) for each ```python block followed directly by a plain ``` block."""
    blocks = re.findall(r"^```(\w*)\n(.*?)^```\n", (ROOT / "README.md").read_text(), re.S | re.M)
    return [(code, shown) for (lang, code), (next_lang, shown) in zip(blocks, blocks[1:])
            if lang == "python" and next_lang == ""]


def test_the_readme_has_examples_with_their_output():
    assert len(_examples()) >= 2


@pytest.mark.parametrize("index", range(len(_examples())))
def test_a_readme_example_prints_what_the_readme_shows(index):
    code, shown = _examples()[index]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == shown.strip()


def test_readme_examples_import_xlstm_viz_before_mlx():
    # MLX imported first keeps its reference BLAS (~30x slower CPU matmuls, with a RuntimeWarning): the README's
    # Python API example did that
    text = (ROOT / "README.md").read_text()
    for lang, code in re.findall(r"^```(\w*)\n(.*?)^```\n", text, re.S | re.M):
        if lang != "python" or "import mlx" not in code:
            continue
        first_mlx = code.index("import mlx")
        assert "import xlstm_viz" in code[:first_mlx], code[:200]
        done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code[: code.index("\n", first_mlx)]],
                              capture_output=True, text=True, timeout=120, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert done.returncode == 0, done.stderr


def test_the_readme_jupyterlab_example_runs_given_a_model_ids_and_a_wiring(tmp_path):
    text = (ROOT / "README.md").read_text()
    code = next(c for lang, c in re.findall(r"^```(\w*)\n(.*?)^```\n", text, re.S | re.M)
                if lang == "python" and "xv.dashboard()" in c)
    prelude = ("import xlstm_viz as xv, mlx.core as mx\nfrom xlstm_viz.wiring import AutoNCP\n"
               "model = xv.load_demo(); ids = mx.array([[1, 2, 3, 4]])\nwiring = AutoNCP(12, 3); wiring.build(4)\n")
    done = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=180, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path)))
    assert done.returncode == 0, done.stderr[-2000:]
