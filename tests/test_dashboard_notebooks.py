"""The three dashboard notebooks execute headless without errors (nbclient, the venv's python3 kernel)."""

from __future__ import annotations

import ast

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


def _notebook(name):
    return next(p for p in NOTEBOOKS if p.name.startswith(name))


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


def test_wiring_notebook_counts_the_wiring_its_sparsity_edit_made():
    nb, _ = executed(_notebook("01_"))
    cell = next(c for c in nb.cells if c.cell_type == "code" and "apply_sparsity" in c.source)
    lines = _text(cell).splitlines()
    counts = ast.literal_eval(lines[0])  # {key: (before, after)}, printed by the cell
    assert counts["synapses"][1] < counts["synapses"][0], counts  # sparsity 0.5 -> 0.8 leaves fewer synapses
    assert counts["sensory_synapses"][1] < counts["sensory_synapses"][0], counts
    assert lines[1] == "undone: True True"


def test_ablation_notebook_shows_the_model_view_while_the_connection_is_off():
    nb, _ = executed(_notebook("03_"))
    code = [c for c in nb.cells if c.cell_type == "code"]
    off = next(i for i, c in enumerate(code) if 'blocks.0.mlstm.memory", 0)' in c.source)
    on = next(i for i, c in enumerate(code) if 'blocks.0.mlstm.memory", 1)' in c.source)
    shown = next(i for i, c in enumerate(code) if c.source.strip().startswith("app.model_view"))
    assert off < shown < on, (off, shown, on)  # the overlay the markdown points at has a change in it
    assert "recall accuracy **1.000 -> 1.000**" in _text(code[on])
