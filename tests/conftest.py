import os
from pathlib import Path

import pytest

import xlstm_viz.blas  # noqa: F401  (bind the fast BLAS before anything imports MLX)

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden"


@pytest.fixture(scope="session")
def golden_dir():
    return GOLDEN


def pytest_configure(config):
    os.environ.setdefault("TQDM_DISABLE", "1")
