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


# After the browser tests, interpreter teardown can abort ("terminate called without an active exception": a native
# thread still joinable when MLX/Bokeh objects are destroyed at exit), turning a green run into exit code 134. Leave
# with pytest's own exit status once its report is printed; a failing or empty run (exit 1, 5) still fails.
_exit_status = {}


def pytest_sessionfinish(session, exitstatus):
    _exit_status["code"] = int(exitstatus)


def pytest_unconfigure(config):
    if "code" in _exit_status and os.environ.get("XLSTM_VIZ_HARD_EXIT", "1") == "1":
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status["code"])
