import os
from pathlib import Path

import pytest

import xlstm_viz.blas  # noqa: F401  (bind the fast BLAS before anything imports MLX)

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden"


@pytest.fixture(scope="session")
def golden_dir():
    return GOLDEN


@pytest.fixture
def tiny_model():
    """The golden tiny checkpoint, loaded fresh (tests edit its wirings)."""
    import xlstm_viz

    return xlstm_viz.load_model(GOLDEN / "tiny")


@pytest.fixture
def tiny_ids():
    """The token ids of the tiny checkpoint's reference run."""
    import mlx.core as mx
    import numpy as np

    return mx.array(np.load(GOLDEN / "tiny" / "reference.npz")["input_ids"])


def pytest_configure(config):
    os.environ.setdefault("TQDM_DISABLE", "1")
