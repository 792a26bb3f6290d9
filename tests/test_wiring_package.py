"""The wiring package stands alone: no MLX, no tensor library, every public name importable."""

import os
import subprocess
import sys
from pathlib import Path

import xlstm_viz.wiring as W


def test_importing_wiring_loads_neither_mlx_nor_safetensors():
    code = (
        "import sys, xlstm_viz.wiring as W; W.BlockWiring; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('mlx', 'safetensors', 'torch', 'ncps')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = str(Path(W.__file__).resolve().parents[2])  # the checkout holding xlstm_viz/
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_exported_name_exists():
    missing = [name for name in W.__all__ if not hasattr(W, name)]
    assert not missing
