"""The installed package must carry every subpackage and the top-level assets/ and kernels/ folders."""

import os
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "xlstm_viz").rglob("__init__.py")
    }
    assert on_disk <= listed, f"subpackages missing from pyproject [tool.setuptools] packages: {sorted(on_disk - listed)}"
    for package, folder in config["package-dir"].items():
        assert (ROOT / folder).is_dir(), f"{package} maps to missing folder {folder}/"


def test_profile_initialisation_is_seeded_and_follows_the_profile():
    import numpy as np

    from xlstm_viz.config import XLSTMConfig
    from xlstm_viz.model import XLSTM

    config = XLSTMConfig(embedding_dim=64, num_heads=4, num_blocks=2, vocab_size=50)
    a = XLSTM(config, init_profile="xlstm-large", seed=3)
    b = XLSTM(config, init_profile="xlstm-large", seed=3)
    np.testing.assert_array_equal(np.array(a.blocks[0].mlstm_layer.q.weight), np.array(b.blocks[0].mlstm_layer.q.weight))
    np.testing.assert_array_equal(np.array(a.blocks[1].mlstm_layer.igate_preact.bias), -10.0)
    np.testing.assert_allclose(np.array(a.blocks[1].mlstm_layer.fgate_preact.bias), np.linspace(3, 6, 4))
    assert np.all(np.array(a.blocks[0].mlstm_layer.igate_preact.weight) == 0)


def test_the_seed_of_a_model_without_a_profile_picks_its_initial_weights():
    import numpy as np
    import pytest

    from xlstm_viz.config import XLSTMConfig
    from xlstm_viz.model import XLSTM

    config = XLSTMConfig(embedding_dim=64, num_heads=4, num_blocks=2, vocab_size=50)
    q = lambda m: np.array(m.blocks[0].mlstm_layer.q.weight)  # noqa: E731
    a, again, other = XLSTM(config, seed=1), XLSTM(config, seed=1), XLSTM(config, seed=2)
    np.testing.assert_array_equal(q(a), q(again))
    assert not np.array_equal(q(a), q(other))  # seed= was ignored here: any two seeds gave the generator's next draw
    with pytest.raises(ValueError, match="seed must be None or an integer in"):
        XLSTM(config, seed=-1)


def test_importing_the_package_asks_mlx_for_full_float32_matmuls_unless_the_user_chose():
    import subprocess
    import sys

    code = "import os, xlstm_viz; print(os.environ['MLX_ENABLE_TF32'])"
    env = {k: v for k, v in os.environ.items() if k != "MLX_ENABLE_TF32"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "0"
    env["MLX_ENABLE_TF32"] = "1"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "1"


def test_importing_the_package_first_gives_mlx_the_fast_blas_and_importing_it_late_warns():
    import subprocess
    import sys

    from xlstm_viz.blas import _CANDIDATES

    installed = next((p for p in _CANDIDATES if os.path.exists(p)), None)  # CI installs libopenblas0-pthread
    env = {k: v for k, v in os.environ.items() if k != "XLSTM_VIZ_BLAS"}
    run = lambda code: subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    # the common order: the package, then MLX, without importing xlstm_viz.blas by hand
    loaded = run("import xlstm_viz, mlx.core, sys; print(sys.modules['xlstm_viz.blas'].loaded)").stdout.strip()
    assert loaded == str(installed)
    late = run("import mlx.core, xlstm_viz, sys; print(sys.modules['xlstm_viz.blas'].loaded)")
    assert late.stdout.strip() == "None"
    if installed:
        assert "mlx.core was imported before xlstm_viz" in late.stderr and installed in late.stderr
