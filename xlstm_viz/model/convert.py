"""An original xLSTM (an xLSTMLMModel checkpoint: `OriginalConfig` + its official tensors) as a block-registry model
(`XLSTM`) with the same computation: its mLSTM blocks become "orig_mlstm" blocks, its sLSTM blocks "slstm" blocks
(with or without conv and FFN), its post-blocks norm a `layernorm_offset` out_norm, its head uncapped; the official
sizes go into the config (`registry_config`). That model runs through the shared forward, so traces, interventions,
the debugger and the dashboard work on it. `xlstm_viz.load_model` on an original folder returns it.

Weights are renamed (not copied): the official proj_up [2I, D] is split into proj_up / proj_z (and the sLSTM FFN's
into proj_up_gate / proj_up), the official `fgate`/`igate` naming swap of the sLSTM layer is undone, a cuda-layout
recurrent kernel is put in the vanilla layout, and absent biases and group-norm weights become zeros (no bias, scale
1 + 0): the same arithmetic.
"""

from __future__ import annotations

import mlx.core as mx
from mlx.utils import tree_unflatten

from xlstm_viz.config import XLSTMConfig
from xlstm_viz.model import slstm_cell
from xlstm_viz.model.xlstm import XLSTM

# `oc` below is an xlstm_viz.model.xlstm_original.OriginalConfig (not imported: that module imports this one)


def registry_config(oc, chunk_size: int = 64) -> XLSTMConfig:
    """The XLSTMConfig of the registry model: block types, heads and every official size the blocks read."""
    kinds = ["slstm" if k == "slstm" else "orig_mlstm" for k in oc.block_types]
    has_m, has_s = "orig_mlstm" in kinds, "slstm" in kinds
    ffn = oc.feedforward if has_s else None
    sizes = {}
    if has_m:
        m = oc.mlstm
        sizes.update(orig_mlstm_inner_dim=oc.inner_dim, orig_mlstm_qkv_blocksize=m.qkv_proj_blocksize,
                     orig_mlstm_conv_kernel=m.conv1d_kernel_size)
    if has_s:
        sizes.update(slstm_num_heads=oc.slstm.num_heads, slstm_conv_kernel=oc.slstm.conv1d_kernel_size,
                     slstm_ffn_act=None if ffn is None else ffn.act_fn,
                     **({} if ffn is None else {"slstm_ffn_dim": oc.ffn_dim}))
    return XLSTMConfig(
        embedding_dim=oc.embedding_dim, num_heads=oc.mlstm.num_heads if has_m else oc.slstm.num_heads,
        num_blocks=oc.num_blocks, vocab_size=oc.vocab_size, block_types=kinds,
        use_bias=bool(oc.bias or (ffn is not None and ffn.bias)), add_out_norm=oc.add_post_blocks_norm,
        out_norm_type="layernorm_offset", output_logit_soft_cap=None, tie_word_embeddings=oc.tie_weights,
        chunk_size=chunk_size, **sizes,
    )


def registry_model(oc, W: dict, chunk_size: int = 64) -> XLSTM:
    """The original model (config, official tensors by name, shapes already validated) as an `XLSTM` of registry
    block types (same logits and states); see the module doc."""
    config = registry_config(oc, chunk_size)
    model = XLSTM(config)
    shapes = model.checkpoint_shapes()
    zeros = lambda name: mx.zeros(shapes[name])  # noqa: E731  (an absent bias or GN weight: the same arithmetic)
    new = {"backbone.embeddings.weight": W["token_embedding.weight"]}
    if config.add_out_norm:
        new["backbone.out_norm.weight"] = W["xlstm_block_stack.post_blocks_norm.weight"]
    if not config.tie_word_embeddings:
        new["lm_head.weight"] = W["lm_head.weight"]
    for b, kind in enumerate(config.layer_types()):
        o, p = f"xlstm_block_stack.blocks.{b}.", f"backbone.blocks.{b}."
        get = lambda name, ours: W[o + name] if o + name in W else zeros(ours)  # noqa: E731
        if kind == "orig_mlstm":
            I, L, q = oc.inner_dim, p + "mlstm_layer.", "xlstm."
            up = W[o + q + "proj_up.weight"]
            new.update({
                p + "norm_mlstm.weight": W[o + "xlstm_norm.weight"],
                L + "proj_up.weight": up[:I], L + "proj_z.weight": up[I:],
                L + "conv1d.weight": W[o + q + "conv1d.conv.weight"], L + "conv1d.bias": W[o + q + "conv1d.conv.bias"],
                **{L + f"{g}.weight": W[o + q + f"{g}_proj.weight"] for g in "qkv"},
                **{L + f"{g}.{leaf}": W[o + q + f"mlstm_cell.{g}.{leaf}"] for g in ("igate", "fgate")
                   for leaf in ("weight", "bias")},
                L + "outnorm.weight": W[o + q + "mlstm_cell.outnorm.weight"],
                L + "learnable_skip": W[o + q + "learnable_skip"],
                L + "proj_down.weight": W[o + q + "proj_down.weight"],
            })
            if config.use_bias:
                up_b = W.get(o + q + "proj_up.bias", mx.zeros((2 * I,)))
                new.update({L + "proj_up.bias": up_b[:I], L + "proj_z.bias": up_b[I:],
                            L + "proj_down.bias": get(q + "proj_down.bias", L + "proj_down.bias"),
                            **{L + f"{g}.bias": get(q + f"{g}_proj.bias", L + f"{g}.bias") for g in "qkv"}})
            continue
        s, L, q = oc.slstm, p + "slstm_layer.", "xlstm."
        R, bias = slstm_cell.vanilla_layout(W[o + q + "slstm_cell._recurrent_kernel_"], W[o + q + "slstm_cell._bias_"],
                                            s.num_heads, s.backend)
        if s.conv1d_kernel_size > 0:
            new.update({L + "conv1d.weight": W[o + q + "conv1d.conv.weight"],
                        L + "conv1d.bias": W[o + q + "conv1d.conv.bias"]})
        new.update({
            p + "norm_slstm.weight": W[o + "xlstm_norm.weight"],
            # the official layer's naming swap: its `fgate` computes the input gate, its `igate` the forget gate
            L + "igate.weight": W[o + q + "fgate.weight"], L + "fgate.weight": W[o + q + "igate.weight"],
            L + "zgate.weight": W[o + q + "zgate.weight"], L + "ogate.weight": W[o + q + "ogate.weight"],
            L + "recurrent_kernel": R.reshape(shapes[L + "recurrent_kernel"]),
            L + "bias": bias.reshape(shapes[L + "bias"]),
            L + "group_norm.weight": get(q + "group_norm.weight", L + "group_norm.weight"),
        })
        if oc.feedforward is None:
            continue
        F, up = oc.ffn_dim, W[o + "ffn.proj_up.weight"]
        new.update({
            p + "norm_ffn.weight": W[o + "ffn_norm.weight"],
            p + "ffn.proj_up_gate.weight": up[:F], p + "ffn.proj_up.weight": up[F:],
            p + "ffn.proj_down.weight": W[o + "ffn.proj_down.weight"],
        })
        if config.use_bias:
            up_b = W.get(o + "ffn.proj_up.bias", mx.zeros((2 * F,)))
            new.update({p + "ffn.proj_up_gate.bias": up_b[:F], p + "ffn.proj_up.bias": up_b[F:],
                        p + "ffn.proj_down.bias": get("ffn.proj_down.bias", p + "ffn.proj_down.bias")})
    # Only biases may be absent officially (use_bias adds them everywhere, e.g. the out_norm's): zeros. Anything
    # else unmapped is a bug here, not bad input.
    missing = sorted(set(shapes) - set(new))
    assert all(k.endswith(".bias") for k in missing), f"weights not mapped from the checkpoint: {missing}"
    new.update({k: mx.zeros(shapes[k]) for k in missing})
    unknown = sorted(set(new) - set(shapes))
    assert not unknown, f"renamed weights the model does not have: {unknown}"
    model.update(tree_unflatten(list(new.items())))
    # Evaluated here: the slices are lazy, and MLX evaluates an array on the thread that built it (the dashboard's
    # model thread is another one).
    mx.eval(model.parameters())
    return model
