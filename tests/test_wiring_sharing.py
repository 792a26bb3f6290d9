"""Sharing declarations of a CellWiring as the executor runs them (share_feature_groups, share_featurizer), observed
through the public API (model(...), run_with_trace, model.interventions, CellWiring methods).

The reference is a second checkpoint whose tensors were changed by hand (copied rows, a shared weight) and loaded
with `load_model`: the sharing must give that model's logits."""


import numpy as np
import pytest


from edited_checkpoints import NH, assert_close, block, edited_checkpoint, folder, full, ids, logits, model  # noqa: F401 - fixtures


# -- share_feature_groups --------------------------------------------------------------------------------------
def test_tied_query_heads_equal_a_checkpoint_whose_query_rows_were_copied(model, folder, ids, tmp_path):
    base = logits(model, ids)
    model.cell_wirings[0].share_feature_groups("blocks.0.mlstm.q", [[0, 2], [1], [3]])  # head 2 reads head 0's rows

    def copy_rows(t):
        q = t[block(0) + "mlstm_layer.q.weight"]
        size = q.shape[0] // NH
        q[2 * size:3 * size] = q[0:size]

    reference = edited_checkpoint(folder, tmp_path, copy_rows)
    got = logits(model, ids)
    assert not np.allclose(got, base, atol=1e-3)
    assert_close(got, logits(reference, ids))
    q = full(model, ids, ["blocks.0.mlstm.q"])["blocks.0.mlstm.q"]
    assert_close(q[..., 16:24], q[..., 0:8])  # heads are 8 wide (equal weights; BLAS may order sums per row)
    assert not np.array_equal(q[..., 8:16], q[..., 0:8])
    model.cell_wirings[0].undo()
    np.testing.assert_array_equal(logits(model, ids), base)


def test_tied_norm_scale_groups_equal_a_checkpoint_with_the_scale_copied(model, folder, ids, tmp_path):
    model.cell_wirings[1].share_feature_groups("blocks.1.ffn.norm_in", 2)  # the second half reads the first half

    def copy_half(t):
        w = t[block(1) + "norm_ffn.weight"]
        w[32:] = w[:32]

    assert_close(logits(model, ids), logits(edited_checkpoint(folder, tmp_path, copy_half), ids))


def test_tied_gate_rows_tie_the_weight_and_keep_each_heads_bias(model, folder, ids, tmp_path):
    model.cell_wirings[0].share_feature_groups("blocks.0.mlstm.fgate", NH)

    def copy_rows(t):
        w = t[block(0) + "mlstm_layer.fgate_preact.weight"]
        w[1:] = w[0]

    assert_close(logits(model, ids), logits(edited_checkpoint(folder, tmp_path, copy_rows), ids))


@pytest.mark.parametrize("run_mode", ["chunkwise", "recurrent"])
def test_tied_groups_of_a_weightless_cell_tie_its_activations(model, ids, run_mode):
    h = full(model, ids, ["blocks.0.mlstm.h"], run_mode)["blocks.0.mlstm.h"]
    wiring = model.cell_wirings[0]
    wiring.share_feature_groups("blocks.0.mlstm.h", [[1, 0], [2, 3]])
    index = wiring.feature_group_index("blocks.0.mlstm.h")
    assert list(index[:16]) == list(range(16, 32)) * 1 and list(index[48:]) == list(range(32, 48))
    got = full(model, ids, ["blocks.0.mlstm.h", "logits"], run_mode)
    np.testing.assert_array_equal(got["blocks.0.mlstm.h"], h[..., index])
    # The same activations put in by a replace intervention on the unedited wiring give the same logits.
    wiring.undo()
    model.interventions.add("blocks.0.mlstm.h", "replace", value=h[..., index])
    assert_close(got["logits"], logits(model, ids, run_mode))


# -- featurizer sharing ----------------------------------------------------------------------------------------
def test_the_two_rmsnorm_weights_can_share_a_featurizer(model, folder, ids, tmp_path):
    base = logits(model, ids)
    model.cell_wirings[0].share_featurizer(["blocks.0.mlstm.norm_in", "blocks.0.ffn.norm_in"])

    def share(t):
        t[block(0) + "norm_ffn.weight"] = t[block(0) + "norm_mlstm.weight"].copy()

    got = logits(model, ids)
    assert not np.allclose(got, base, atol=1e-3)
    assert_close(got, logits(edited_checkpoint(folder, tmp_path, share), ids))


def test_query_and_key_sharing_a_featurizer_equal_a_checkpoint_with_k_set_to_q(model, folder, ids, tmp_path):
    model.cell_wirings[1].share_featurizer(["blocks.1.mlstm.q", "blocks.1.mlstm.k"])
    got = full(model, ids, ["blocks.1.mlstm.q", "blocks.1.mlstm.k", "logits"])
    np.testing.assert_array_equal(got["blocks.1.mlstm.k"], got["blocks.1.mlstm.q"])

    def share(t):
        t[block(1) + "mlstm_layer.k.weight"] = t[block(1) + "mlstm_layer.q.weight"].copy()

    assert_close(got["logits"], logits(edited_checkpoint(folder, tmp_path, share), ids))


@pytest.mark.parametrize("j, cell, path", [(1, "slstm.igate", "slstm_layer.igate.weight"),
                                           (0, "mlstm.q", "mlstm_layer.q.weight")])
def test_tied_groups_of_a_block_diagonal_weight_equal_a_model_with_those_heads_copied(golden_dir, j, cell, path):
    """The sLSTM gates and the original mLSTM's q/k/v hold block-diagonal weights [heads, out, in], whose output
    feature h * out + o is row o of head h. Tying their feature groups gathered axis 0 (the heads) with an index
    over the features, and the next forward crashed inside MLX ("[reshape] Cannot reshape array of size 576 into
    shape (2,9,32,16)"). Now group 1 computes with group 0's rows, as a model whose second half of heads was set
    to the first half computes, eager and compiled, chunkwise and recurrent."""
    import mlx.core as mx
    from mlx.utils import tree_unflatten

    import xlstm_viz

    model = xlstm_viz.load_model(golden_dir / "orig_mixed")
    reference = xlstm_viz.load_model(golden_dir / "orig_mixed")
    x = mx.array(np.load(golden_dir / "orig_mixed" / "reference.npz")["input_ids"])
    base = np.array(model(x)[0])
    model.cell_wirings[j].share_feature_groups(f"blocks.{j}.{cell}", 2)
    w = np.array(reference.blocks[j].param(path))
    half = w.shape[0] // 2
    w[half:] = w[:half]
    reference.update(tree_unflatten([(f"backbone.blocks.{j}.{path}", mx.array(w))]))
    want = np.array(reference(x)[0])
    assert not np.allclose(want, base, atol=1e-3)
    for what, got in (("eager", model(x)[0]), ("compiled", model.compiled("chunkwise")(x, None)[0]),
                      ("recurrent", model(x, mode="recurrent")[0])):
        assert_close(np.array(got), want)
    model.cell_wirings[j].undo()
    np.testing.assert_array_equal(np.array(model(x)[0]), base)
