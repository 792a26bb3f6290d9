"""Helpers of the wiring tests that compare an edit with a checkpoint edited by hand (copied rows, negated or shared
weights) and loaded with `load_model`: fixtures over the tiny golden model and the comparisons they use."""

import shutil

import mlx.core as mx
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import xlstm_viz

pytestmark = pytest.mark.numerical

NH = 4  # heads of the tiny fixture (D=64, qk 32, v 64)


@pytest.fixture
def folder(golden_dir):
    return golden_dir / "tiny"


@pytest.fixture
def model(folder):
    return xlstm_viz.load_model(folder)


@pytest.fixture
def ids(folder):
    return mx.array(np.load(folder / "reference.npz")["input_ids"])


def edited_checkpoint(folder, tmp_path, edit):
    """load_model of a copy of `folder` whose tensors `edit(dict)` changed (names as in the checkpoint)."""
    out = tmp_path / "edited"
    out.mkdir()
    shutil.copy(folder / "config.json", out / "config.json")
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, out / "model.safetensors")
    return xlstm_viz.load_model(out)


def assert_close(got, want, rel=1e-5):
    got, want = np.asarray(got), np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=rel, atol=rel * float(np.abs(want).max()))


def logits(model, ids, mode="chunkwise"):
    return np.array(model(ids, mode=mode)[0])


def full(model, ids, probes, run_mode="chunkwise"):
    return model.run_with_trace(ids, probes=probes, mode="full", run_mode=run_mode).full


def block(i):
    return f"backbone.blocks.{i}."
