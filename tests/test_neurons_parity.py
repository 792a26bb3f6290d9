"""CfC and LTC against the official ncps.torch 1.0.1 on identical weights and inputs.

Fixtures: tests/fixtures/golden/ncps/, made by tools/golden_ncps.py through
`/work/venv-ref/bin/python tools/make_golden.py --out tests/fixtures/golden --only ncps`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import xlstm_viz  # noqa: F401  (binds the fast BLAS before MLX loads)
import mlx.core as mx

from xlstm_viz import wiring as xw
from xlstm_viz.neurons import CfC, LTC, NeuronStateDictError

pytestmark = pytest.mark.numerical

FIXTURES = Path(__file__).parent / "fixtures" / "golden" / "ncps"
SPEC = json.loads((FIXTURES / "cases.json").read_text())
CASES = {c["name"]: c for c in SPEC["cases"]}
REF = np.load(FIXTURES / "reference.npz")
# float32 on both sides over 6 steps; measured worst 3e-7 (2.5 ulp) of the largest magnitude compared. 16 ulp leaves
# room for another BLAS's summation order.
RTOL = 16 * float(np.finfo(np.float32).eps)


def assert_close(ours, ref, what):
    ours = np.array(ours)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} vs official {ref.shape}"
    scale = max(1.0, float(np.max(np.abs(ref))))
    err = float(np.max(np.abs(ours - ref)))
    assert err <= RTOL * scale, f"{what}: max |ours - official| = {err:.3g} (scale {scale:.3g})"


def make_wiring(case):
    if "wiring" not in case:
        return case["units"]
    cls, args, kwargs = case["wiring"]
    return getattr(xw, cls)(*args, **kwargs)


def build(name, load=True):
    case = CASES[name]
    units = make_wiring(case)
    model = {"CfC": CfC, "LTC": LTC}[case["cls"]](case["input_size"], units, **case["kwargs"])
    if load:
        model.load_state_dict(FIXTURES / f"{name}.safetensors")
    model.eval()
    return model, case


@pytest.mark.parametrize("name", sorted(CASES))
def test_state_dict_names_and_shapes_are_ncps_own(name):
    model, case = build(name, load=False)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == dict(case["state_dict"])


@pytest.mark.parametrize("name", sorted(n for n in CASES if "wiring" in CASES[n]))
def test_wiring_matrices_equal_the_ncps_wiring(name):
    model, _ = build(name, load=False)
    np.testing.assert_array_equal(model.wiring.adjacency_matrix, REF[f"{name}/adjacency"])
    np.testing.assert_array_equal(model.wiring.sensory_adjacency_matrix, REF[f"{name}/sensory_adjacency"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_and_final_state_match_ncps(name):
    model, case = build(name)
    mixed = case["kwargs"].get("mixed_memory", False)
    y, hx = model(mx.array(REF[f"{name}/x"]))
    h, c = hx if mixed else (hx, None)
    assert_close(y, REF[f"{name}/y"], f"{name} output")
    assert_close(h, REF[f"{name}/h"], f"{name} final h")
    if mixed:
        assert_close(c, REF[f"{name}/c"], f"{name} final c")


@pytest.mark.parametrize("name", sorted(CASES))
def test_batched_timespans_and_initial_state_match_per_sample_ncps_runs(name):
    model, case = build(name)
    mixed = case["kwargs"].get("mixed_memory", False)
    h0 = mx.array(REF[f"{name}/hx0"])
    hx0 = (h0, mx.array(REF[f"{name}/cx0"])) if mixed else h0
    y, hx = model(mx.array(REF[f"{name}/x"]), hx0, mx.array(REF[f"{name}/ts"]))
    h, c = hx if mixed else (hx, None)
    assert_close(y, REF[f"{name}/ts_y"], f"{name} output with timespans")
    assert_close(h, REF[f"{name}/ts_h"], f"{name} final h with timespans")
    if mixed:
        assert_close(c, REF[f"{name}/ts_c"], f"{name} final c with timespans")


@pytest.mark.parametrize("name", sorted(n for n in CASES if CASES[n].get("edits")))
def test_live_wiring_edits_compute_what_ncps_computes_with_the_edited_mask_and_erev(name):
    """The fixture edits ncps's tensors (mask entry zeroed, LTC erev negated); we edit only the wiring."""
    model, case = build(name)
    for matrix, src, dest, polarity in case["edits"]:
        model.wiring.set_polarity(src, dest, polarity, sensory=matrix == "sensory")
    y, _ = model(mx.array(REF[f"{name}/x"]))
    assert float(np.max(np.abs(REF[f"{name}/edited_y"] - REF[f"{name}/y"]))) > 1e-3  # the edit matters
    assert_close(y, REF[f"{name}/edited_y"], f"{name} after the wiring edits")
