"""The three dashboard notebooks execute headless without errors (nbclient, the venv's python3 kernel)."""

from __future__ import annotations

import pytest

from tests.notebook_runs import NOTEBOOKS, executed


def test_there_are_at_least_three_notebooks():
    assert len(NOTEBOOKS) >= 3, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_headless_without_errors(path):
    nb, elapsed = executed(path)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert elapsed < 60, f"{path.name} took {elapsed:.0f} s; keep notebooks fast"
