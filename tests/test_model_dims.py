"""Block dimensions against the official code: every width 8..8192, and an official D=96 checkpoint end to end.

tests/fixtures/golden/dims/official_dims.npz and golden/d96/ are written by tools/make_golden.py (tools/golden_model.py)
from the official xlstm 2.0.6 modules.
"""

import mlx.core as mx
import numpy as np
import pytest

import xlstm_viz
from xlstm_viz.config import XLSTMConfig
from xlstm_viz.dims import mlstm_block_dims
from xlstm_viz.wiring import BlockWiring

from tolerances import assert_states_close

pytestmark = pytest.mark.numerical

FACTORS = (2.667, 2.6667)


@pytest.fixture(scope="module")
def official(golden_dir):
    return np.load(golden_dir / "dims" / "official_dims.npz")


@pytest.mark.parametrize("factor", FACTORS)
def test_ffn_width_matches_the_official_feedforward_for_every_width_8_to_8192(official, factor):
    widths, want = official["widths"], official[f"ffn_dim_{factor}"]
    assert widths[0] == 8 and widths[-1] == 8192 and len(widths) == 8185
    dims = [mlstm_block_dims(int(D), 1, ffn_proj_factor=factor) for D in widths]
    got = np.array([d.ffn_dim for d in dims])
    wrong = widths[got != want]
    assert wrong.size == 0, f"{wrong.size} widths differ from the official FFN, first {wrong[:5]}"
    assert [d.qk_dim for d in dims] == official["qk_dim_0.5"].tolist()
    assert [d.v_dim for d in dims] == official["v_dim_1.0"].tolist()


def test_block_wiring_from_a_plain_dict_names_a_bad_factor():
    with pytest.raises(ValueError, match="config field 'qk_dim_factor' must be a positive number, got '0.5'"):
        BlockWiring.from_config({"embedding_dim": 64, "num_heads": 4, "num_blocks": 1, "qk_dim_factor": "0.5"})
    with pytest.raises(ValueError, match="'ffn_round_up_to_multiple_of' must be a positive integer, got 0"):
        BlockWiring.from_config({"embedding_dim": 64, "num_heads": 4, "num_blocks": 1, "ffn_round_up_to_multiple_of": 0})


@pytest.mark.parametrize("factor", FACTORS)
def test_config_and_block_wiring_use_the_official_widths(official, factor):
    widths = official["widths"]
    # Every 7th width keeps this quick; the pure function above is checked at all of them. The multiples of 24
    # (where ceil(D*f/64)*64 is 64 too wide for 2.667) are all included.
    pick = (widths % 7 == 0) | (widths % 24 == 0)
    for D, ffn, qk, v in zip(widths[pick], official[f"ffn_dim_{factor}"][pick], official["qk_dim_0.5"][pick],
                             official["v_dim_1.0"][pick]):
        D = int(D)
        config = XLSTMConfig(embedding_dim=D, num_heads=1, num_blocks=1, vocab_size=8, ffn_proj_factor=factor)
        assert (config.ffn_dim, config.qk_dim, config.v_dim) == (ffn, qk, v), D
        spec = BlockWiring.from_config({"embedding_dim": D, "num_heads": 1, "num_blocks": 1,
                                        "ffn_proj_factor": factor}).blocks[0]
        assert (spec.dims["ffn_dim"], spec.dims["qk_dim"], spec.dims["v_dim"]) == (ffn, qk, v), D


def test_official_d96_checkpoint_loads_with_the_official_ffn_width(golden_dir):
    model = xlstm_viz.load_model(golden_dir / "d96")
    assert model.config.ffn_dim == 256  # ceil(96 * 2.667 / 64) * 64 would be 320
    assert model.blocks[0].ffn.proj_up.weight.shape == (256, 96)
    assert BlockWiring.from_checkpoint(golden_dir / "d96").blocks[0].dims["ffn_dim"] == model.config.ffn_dim


@pytest.mark.parametrize("prefix", ["", "short/"])
@pytest.mark.parametrize("mode,key", [("chunkwise", "chunkwise"), ("recurrent", "step")])
def test_official_d96_logits_and_final_states_match(golden_dir, prefix, mode, key):
    model, ref = xlstm_viz.load_model(golden_dir / "d96"), np.load(golden_dir / "d96" / "reference.npz")
    logits, state = model(mx.array(ref[prefix + "input_ids"]), mode=mode)
    np.testing.assert_allclose(np.array(logits), ref[f"{prefix}logits_{key}"], atol=1e-3, rtol=0)
    assert_states_close(state, ref, f"{prefix}state_{key}")
