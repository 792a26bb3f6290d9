"""The original xLSTM language model (`xlstm.xLSTMLMModel` of xlstm 2.0.6): mLSTM and sLSTM blocks, mixed stacks.

    x_0   = E[ids]
    x_l+1 = x_l + mLSTMLayer(LN(x_l))                                   (mLSTM block, no FFN)
    x_l+1 = y + FFN(LN(y)),  y = x_l + sLSTMLayer(LN(x_l))              (sLSTM block)
    logits = W_lm LN(x_L)                                                (no soft-cap)

Every LayerNorm (eps 1e-5, no bias) multiplies by 1 + w: the checkpoint stores the weight as an offset from 1.

mLSTM layer (blocks/mlstm/layer.py), inner width I = round_up(proj_factor * D), NH heads of DH = I / NH:
    [x_m; z] = W_up x;   x_c = SiLU(conv(x_m));   q = BD_q x_c,  k = BD_k x_c,  v = BD_v x_m   (BD: 4x4 blocks)
    i, f = W_{i,f} [q; k; v] + b_{i,f}      (one per head, no soft-cap)
    h~ = mLSTM cell (stabilised, k scaled by 1/sqrt(DH), m_0 = 0);  out = W_down((GN(h~) + skip * x_c) * SiLU(z))
sLSTM layer (blocks/slstm/layer.py): x_c = SiLU(conv(x)); W_i x_c, W_f x_c, W_z x, W_o x (block-diagonal per head),
    the sLSTM cell (xlstm_viz/model/slstm_cell.py), then GN. Quirk: the layer computes `i, f = fgate(x_c), igate(x_c)`,
    so the parameter *named* `fgate` feeds the input gate and `igate` the forget gate. Cells here are named by their
    role (`slstm.igate` reads `xlstm.fgate.weight`).
FFN (components/feedforward.py): [g; u] = W_up x;  W_down(act(g) * u)  (act = GELU by default).

A block is a table of cells in execution order (`block_cells`). A cell is a pure function
`(inputs, weights, state) -> (output, new_state)` over the values named in `inputs` ("in" is the block input) and the
checkpoint tensors named in `weights`; state is returned, never written anywhere. `OriginalXLSTM.__call__` runs the
tables and, if given, calls `observer(probe_name, value)` after every cell. Probe names:
`embedding`, `blocks.i.in`, `blocks.i.mlstm.{norm_in,up,z,conv,q,k,v,igate,fgate,memory.{h,C_norm,n_norm,m},norm,skip,h,out}`,
`blocks.i.slstm.{norm_in,conv,igate,fgate,zgate,ogate,memory.{i,f,z,o,c,n,m,h},norm}`, `blocks.i.mid`,
`blocks.i.ffn.{norm_in,gate,up,h,out}`, `blocks.i.out`, `out_norm`, `logits`. `memory.{i,f,z,o}` are the full sLSTM
pre-activations (W x + R h + b); `slstm.igate` etc. are the W x parts.

Where this differs from the official code, on purpose:
* mode="chunkwise" evaluates the mLSTM chunk by chunk with the recurrent stabiliser (m_0 = 0), the convention of the
  official `step`, so that its final states are the step's states and prefill-then-step continues exactly. The
  official `forward` uses the quadratic parallel form, whose stabiliser has no m_0 term; h = q C~ / (max(|q n~|, 1) +
  eps e^m) shows the two differ only through eps e^m (<= 4e-6 in the fixtures' logits).
* The official `forward` fails for sequences longer than `context_length` (its causal-mask buffer); any length runs
  here, and `context_length` is accepted and unused. Dropout fields are accepted: this is inference.
* The `min(., 1)` clips of the vanilla sLSTM gates are kept although they never bind (m_t >= raw_i, and at the first
  step f' multiplies c = n = 0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any, Callable, ClassVar

import xlstm_viz.blas  # noqa: F401  (fast BLAS must be bound before MLX loads)
import mlx.core as mx
import mlx.nn as nn

from xlstm_viz.checkpoint import CheckpointError
from xlstm_viz.config import ConfigError
from xlstm_viz.dims import up_proj_dim as round_up_dim  # UpProjConfigMixin's rule
from xlstm_viz.model import mlstm_cell, slstm_cell
from xlstm_viz.model.mlstm_cell import MLSTMState
from xlstm_viz.model.slstm_cell import SLSTMState

LN_EPS = 1e-5  # components/ln.py
MLSTM_EPS = 1e-6  # blocks/mlstm/backends.py
ACTIVATIONS = {
    "gelu": nn.gelu,  # exact (erf) GELU, as torch.nn.functional.gelu
    "relu": nn.relu,
    "relu^2": lambda x: mx.square(nn.relu(x)),
    "sigmoid": mx.sigmoid,
    "swish": nn.silu,
    "selu": nn.selu,
}
MODES = ("chunkwise", "recurrent")


class OriginalConfigError(ConfigError):
    """A config.json that cannot describe an original xLSTM model (names the field and the value)."""


# ----------------------------------------------------------------------------------------------------------- config


def _check(cond: bool, path: str, value: Any, what: str) -> None:
    if not cond:
        raise OriginalConfigError(f"config field {path!r} {what}, got {value!r}")


def _positive_int(path: str, value: Any, zero_ok: bool = False) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if zero_ok else value > 0)
    _check(ok, path, value, "must be a non-negative integer" if zero_ok else "must be a positive integer")
    return value


def _number(path: str, value: Any) -> float:
    _check(isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0, path, value,
           "must be a positive number")
    return float(value)


def _bool(path: str, value: Any) -> bool:
    _check(isinstance(value, bool), path, value, "must be true or false")
    return value


@dataclass
class _Section:
    """A nested section of the official config: known fields are read, fields that cannot change inference (dtype
    and kernel hints, dropout, init choices, bookkeeping) are accepted, anything else is refused by name."""

    IGNORED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def parse(cls, d: Any, path: str) -> "_Section":
        _check(isinstance(d, dict), path, d, "must be a JSON object")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names - set(cls.IGNORED))
        if unknown:
            raise OriginalConfigError(
                f"config field(s) {[f'{path}.{k}' for k in unknown]} are not fields of the official config "
                f"(known: {sorted(names | set(cls.IGNORED))})"
            )
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class MLSTMLayerConfig(_Section):
    conv1d_kernel_size: int = 4
    qkv_proj_blocksize: int = 4
    num_heads: int = 4
    proj_factor: float = 2.0
    round_proj_up_dim_up: bool = True
    round_proj_up_to_multiple_of: int = 64
    embedding_dim: int = -1
    _inner_embedding_dim: int | None = None
    IGNORED = ("bias", "dropout", "context_length", "_num_blocks", "_proj_up_dim")


@dataclass
class SLSTMLayerConfig(_Section):
    num_heads: int = 4
    conv1d_kernel_size: int = 4
    group_norm_weight: bool = True
    backend: str = "cuda"
    function: str = "slstm"
    num_gates: int = 4
    num_states: int = 4
    embedding_dim: int = -1
    hidden_size: int = -1
    IGNORED = (
        "bias_init", "recurrent_weight_init", "_block_idx", "_num_blocks", "gradient_recurrent_cut",
        "gradient_recurrent_clipval", "forward_clipval", "batch_size", "input_shape", "internal_input_shape",
        "output_shape", "constants", "dtype", "dtype_b", "dtype_r", "dtype_w", "dtype_g", "dtype_s", "dtype_a",
        "enable_automatic_mixed_precision", "initial_val", "dropout",
    )


@dataclass
class FeedForwardConfig(_Section):
    proj_factor: float = 1.3
    act_fn: str = "gelu"
    bias: bool = False
    ff_type: str = "ffn_gated"
    round_proj_up_dim_up: bool = True
    round_proj_up_to_multiple_of: int = 64
    # embedding_dim and _proj_up_dim are set per block by the official code (asdict writes -1 and 0 here)
    IGNORED = ("embedding_dim", "dropout", "_num_blocks", "_proj_up_dim")


@dataclass
class OriginalConfig:
    """`xLSTMLMModelConfig` (xlstm 2.0.6) as `dataclasses.asdict` writes it, validated; sizes derived as officially."""

    vocab_size: int
    embedding_dim: int = 128
    num_blocks: int = 1
    add_post_blocks_norm: bool = True
    bias: bool = False
    tie_weights: bool = False
    slstm_at: list[int] = field(default_factory=list)
    mlstm: MLSTMLayerConfig | None = None
    slstm: SLSTMLayerConfig | None = None
    feedforward: FeedForwardConfig | None = None

    TOP_IGNORED = ("context_length", "dropout", "weight_decay_on_embedding", "add_embedding_dropout")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OriginalConfig":
        if isinstance(data.get("xLSTMLMModelConfig"), dict):
            data = data["xLSTMLMModelConfig"]
        known = {"vocab_size", "embedding_dim", "num_blocks", "add_post_blocks_norm", "bias", "tie_weights",
                 "slstm_at", "mlstm_block", "slstm_block", "_block_map", *cls.TOP_IGNORED}
        unknown = sorted(set(data) - known)
        if unknown:
            raise OriginalConfigError(f"config field(s) {unknown} are not fields of xLSTMLMModelConfig")
        _check("vocab_size" in data, "vocab_size", None, "is required")
        D = _positive_int("embedding_dim", data.get("embedding_dim", 128))
        nb = _positive_int("num_blocks", data.get("num_blocks", 1))
        mb, sb = data.get("mlstm_block"), data.get("slstm_block")
        mlstm = slstm = ffn = None
        if mb is not None:
            _check(isinstance(mb, dict), "mlstm_block", mb, "must be a JSON object or null")
            unknown = sorted(set(mb) - {"mlstm", "_num_blocks", "_block_idx"})
            _check(not unknown, "mlstm_block", unknown, "has unknown fields")
            mlstm = MLSTMLayerConfig.parse(mb.get("mlstm", {}), "mlstm_block.mlstm")
        if sb is not None:
            _check(isinstance(sb, dict), "slstm_block", sb, "must be a JSON object or null")
            unknown = sorted(set(sb) - {"slstm", "feedforward", "_num_blocks", "_block_idx"})
            _check(not unknown, "slstm_block", unknown, "has unknown fields")
            slstm = SLSTMLayerConfig.parse(sb.get("slstm", {}), "slstm_block.slstm")
            if sb.get("feedforward", {}) is not None:
                ffn = FeedForwardConfig.parse(sb.get("feedforward", {}), "slstm_block.feedforward")
        slstm_at = data.get("slstm_at", [])
        if mlstm is None:  # xLSTMBlockStackConfig.__post_init__: no mLSTM block config means all sLSTM
            slstm_at = "all"
        if slstm_at == "all":
            slstm_at = list(range(nb))
        cfg = cls(
            vocab_size=_positive_int("vocab_size", data["vocab_size"]), embedding_dim=D, num_blocks=nb,
            add_post_blocks_norm=_bool("add_post_blocks_norm", data.get("add_post_blocks_norm", True)),
            bias=_bool("bias", data.get("bias", False)), tie_weights=_bool("tie_weights", data.get("tie_weights", False)),
            slstm_at=slstm_at, mlstm=mlstm, slstm=slstm, feedforward=ffn,
        )
        cfg.validate(data.get("_block_map"))
        return cfg

    @classmethod
    def from_json(cls, path: str | Path) -> "OriginalConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise OriginalConfigError(f"{path} is not valid JSON: {err}") from None
        _check(isinstance(data, dict), str(path), type(data).__name__, "must hold a JSON object")
        return cls.from_dict(data)

    # -- derived sizes --
    @property
    def block_types(self) -> list[str]:
        return ["slstm" if b in self.slstm_at else "mlstm" for b in range(self.num_blocks)]

    @property
    def inner_dim(self) -> int:
        m = self.mlstm
        return round_up_dim(m.proj_factor, self.embedding_dim, m.round_proj_up_to_multiple_of, m.round_proj_up_dim_up)

    @property
    def ffn_dim(self) -> int:
        f = self.feedforward
        return round_up_dim(f.proj_factor, self.embedding_dim, f.round_proj_up_to_multiple_of, f.round_proj_up_dim_up)

    def validate(self, block_map: str | None = None) -> None:
        D, nb = self.embedding_dim, self.num_blocks
        _check(isinstance(self.slstm_at, list) and all(isinstance(b, int) and not isinstance(b, bool)
                                                       for b in self.slstm_at), "slstm_at", self.slstm_at,
               'must be a list of block indices or "all"')
        bad = [b for b in self.slstm_at if not 0 <= b < nb]
        _check(not bad, "slstm_at", self.slstm_at, f"has indices outside 0..{nb - 1} (num_blocks = {nb})")
        if block_map is not None:
            derived = ",".join("1" if t == "slstm" else "0" for t in self.block_types)
            _check(block_map == derived, "_block_map", block_map,
                   f"contradicts slstm_at = {self.slstm_at} (which gives {derived!r})")
        if "mlstm" in self.block_types:
            m, p = self.mlstm, "mlstm_block.mlstm"
            for name in ("conv1d_kernel_size", "qkv_proj_blocksize", "num_heads", "round_proj_up_to_multiple_of"):
                _positive_int(f"{p}.{name}", getattr(m, name))
            _number(f"{p}.proj_factor", m.proj_factor)
            _bool(f"{p}.round_proj_up_dim_up", m.round_proj_up_dim_up)
            I = self.inner_dim
            _check(m._inner_embedding_dim in (None, I), f"{p}._inner_embedding_dim", m._inner_embedding_dim,
                   f"contradicts proj_factor {m.proj_factor} x embedding_dim {D} rounded up to a multiple of "
                   f"{m.round_proj_up_to_multiple_of} = {I}")
            _check(m.embedding_dim in (-1, None, D), f"{p}.embedding_dim", m.embedding_dim, f"must equal embedding_dim {D}")
            _check(I % m.num_heads == 0, f"{p}.num_heads", m.num_heads, f"must divide the inner dimension {I}")
            _check(I % m.qkv_proj_blocksize == 0, f"{p}.qkv_proj_blocksize", m.qkv_proj_blocksize,
                   f"must divide the inner dimension {I}")
        if "slstm" in self.block_types:
            _check(self.slstm is not None, "slstm_block", None, f"is required: slstm_at = {self.slstm_at}")
            s, p = self.slstm, "slstm_block.slstm"
            _positive_int(f"{p}.num_heads", s.num_heads)
            _positive_int(f"{p}.conv1d_kernel_size", s.conv1d_kernel_size, zero_ok=True)
            _bool(f"{p}.group_norm_weight", s.group_norm_weight)
            _check(s.backend in ("vanilla", "cuda"), f"{p}.backend", s.backend, "must be 'vanilla' or 'cuda'")
            _check(s.function == "slstm", f"{p}.function", s.function, "must be 'slstm' (the only cell supported)")
            _check(s.num_gates == 4, f"{p}.num_gates", s.num_gates, "must be 4")
            _check(s.num_states == 4, f"{p}.num_states", s.num_states, "must be 4")
            _check(D % s.num_heads == 0, f"{p}.num_heads", s.num_heads, f"must divide embedding_dim {D}")
            for name in ("embedding_dim", "hidden_size"):
                _check(getattr(s, name) in (-1, None, D), f"{p}.{name}", getattr(s, name), f"must equal embedding_dim {D}")
            if self.feedforward is not None:
                f, p = self.feedforward, "slstm_block.feedforward"
                _number(f"{p}.proj_factor", f.proj_factor)
                _positive_int(f"{p}.round_proj_up_to_multiple_of", f.round_proj_up_to_multiple_of)
                _check(f.act_fn in ACTIVATIONS, f"{p}.act_fn", f.act_fn, f"must be one of {sorted(ACTIVATIONS)}")
                _check(f.ff_type == "ffn_gated", f"{p}.ff_type", f.ff_type, "must be 'ffn_gated'")
                _bool(f"{p}.bias", f.bias)

    def checkpoint_shapes(self) -> dict[str, tuple[int, ...]]:
        """Official state_dict name -> shape (what `xLSTMLMModel(config).state_dict()` holds)."""
        D, V = self.embedding_dim, self.vocab_size
        shapes = {"token_embedding.weight": (V, D)}
        for b, kind in enumerate(self.block_types):
            p = f"xlstm_block_stack.blocks.{b}."
            shapes[p + "xlstm_norm.weight"] = (D,)
            if kind == "mlstm":
                m, I = self.mlstm, self.inner_dim
                nbd, bs, nh = I // m.qkv_proj_blocksize, m.qkv_proj_blocksize, m.num_heads
                shapes.update({
                    p + "xlstm.proj_up.weight": (2 * I, D), p + "xlstm.proj_down.weight": (D, I),
                    p + "xlstm.conv1d.conv.weight": (I, 1, m.conv1d_kernel_size), p + "xlstm.conv1d.conv.bias": (I,),
                    p + "xlstm.learnable_skip": (I,), p + "xlstm.mlstm_cell.outnorm.weight": (I,),
                    p + "xlstm.mlstm_cell.igate.weight": (nh, 3 * I), p + "xlstm.mlstm_cell.igate.bias": (nh,),
                    p + "xlstm.mlstm_cell.fgate.weight": (nh, 3 * I), p + "xlstm.mlstm_cell.fgate.bias": (nh,),
                })
                for g in "qkv":
                    shapes[p + f"xlstm.{g}_proj.weight"] = (nbd, bs, bs)
                    if self.bias:
                        shapes[p + f"xlstm.{g}_proj.bias"] = (I,)
                if self.bias:
                    shapes.update({p + "xlstm.proj_up.bias": (2 * I,), p + "xlstm.proj_down.bias": (D,)})
            else:
                s = self.slstm
                nh, dh = s.num_heads, D // s.num_heads
                if s.conv1d_kernel_size > 0:
                    shapes.update({p + "xlstm.conv1d.conv.weight": (D, 1, s.conv1d_kernel_size),
                                   p + "xlstm.conv1d.conv.bias": (D,)})
                for g in "ifzo":
                    shapes[p + f"xlstm.{g}gate.weight"] = (nh, dh, dh)
                R = (nh, 4 * dh, dh) if s.backend == "vanilla" else (nh, dh, 4 * dh)
                shapes.update({p + "xlstm.slstm_cell._recurrent_kernel_": R, p + "xlstm.slstm_cell._bias_": (4 * D,)})
                if s.group_norm_weight:
                    shapes[p + "xlstm.group_norm.weight"] = (D,)
                if self.feedforward is not None:
                    F = self.ffn_dim
                    shapes.update({p + "ffn_norm.weight": (D,), p + "ffn.proj_up.weight": (2 * F, D),
                                   p + "ffn.proj_down.weight": (D, F)})
                    if self.feedforward.bias:
                        shapes.update({p + "ffn.proj_up.bias": (2 * F,), p + "ffn.proj_down.bias": (D,)})
        if self.add_post_blocks_norm:
            shapes["xlstm_block_stack.post_blocks_norm.weight"] = (D,)
        if not self.tie_weights:
            shapes["lm_head.weight"] = (V, D)
        return shapes


def is_original_config(data: Any) -> bool:
    """Whether a config.json dict describes `xLSTMLMModel` (rather than xLSTM-Large / the 7B)."""
    return isinstance(data, dict) and (
        "xLSTMLMModelConfig" in data or "mlstm_block" in data or "slstm_block" in data
    )


# ----------------------------------------------------------------------------------------------------------- maths


def layer_norm(x: mx.array, w: mx.array | None, eps: float = LN_EPS) -> mx.array:
    """components/ln.py LayerNorm: biased variance, no bias, weight stored as an offset (scale = 1 + w)."""
    mean = mx.mean(x, axis=-1, keepdims=True)
    var = mx.mean(mx.square(x - mean), axis=-1, keepdims=True)
    y = (x - mean) * mx.rsqrt(var + eps)
    return y if w is None else y * (1.0 + w)


def group_norm(x: mx.array, w: mx.array | None, num_heads: int, eps: float = LN_EPS) -> mx.array:
    """MultiHeadLayerNorm: a LayerNorm per head over its DH features of x [..., NH*DH], then the flat 1 + w."""
    shape = x.shape
    y = layer_norm(x.reshape(*shape[:-1], num_heads, shape[-1] // num_heads), None, eps).reshape(shape)
    return y if w is None else y * (1.0 + w)


def linear(x: mx.array, w: mx.array, b: mx.array | None = None) -> mx.array:
    """y = x W^T (+ b), weights stored [out, in]."""
    return x @ w.T if b is None else mx.addmm(b, x, w.T)


def headwise(x: mx.array, w: mx.array, b: mx.array | None = None) -> mx.array:
    """LinearHeadwiseExpand: block-diagonal y_h = W_h x_h, W [NB, out, in] over NB consecutive feature blocks."""
    nb, _, din = w.shape
    y = mx.einsum("...hd,hod->...ho", x.reshape(*x.shape[:-1], nb, din), w)
    y = y.reshape(*x.shape[:-1], -1)
    return y if b is None else y + b


def causal_conv(x: mx.array, w: mx.array, b: mx.array, history: mx.array) -> tuple[mx.array, mx.array]:
    """Depthwise causal Conv1d (CausalConv1d): y_t = b + sum_j w[:, 0, j] x_{t-KS+1+j}, x [B, S, F], w [F, 1, KS].

    `history` holds the KS-1 inputs before x ([B, KS-1, F], zeros at the start); returns y and the new history."""
    ks = w.shape[-1]
    xp = mx.concatenate([history, x], axis=1)
    S = x.shape[1]
    y = b + sum(w[:, 0, j] * xp[:, j : j + S] for j in range(ks))
    return y, xp[:, xp.shape[1] - (ks - 1) :]


# ----------------------------------------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """One computation of a block: `fn(inputs, weights, state) -> (output, new_state)`.

    inputs: local names of the values it reads ("in" = block input); weights: {argument: checkpoint name relative
    to the block prefix}; state: whether it carries recurrent state (None in, the new one out); heads: how its last
    axis splits into heads (None: not per head); output: "array" or "dict" (a dict of named per-token arrays, each
    probed as `<cell>.<key>` for key in `outputs`; `primary` is the key that other cells read)."""

    name: str
    inputs: tuple[str, ...]
    weights: dict[str, str]
    fn: Callable[..., tuple[Any, Any]]
    state: bool = False
    heads: int | None = None
    primary: str | None = None
    outputs: tuple[str, ...] = ()
    equation: str = ""


def _opt(cond: bool, **names: str) -> dict[str, str]:
    return dict(names) if cond else {}


# Cell functions. Each takes (inputs tuple, weights dict, state) and returns (output, new_state).

def _norm_cell(x, w, s):
    return layer_norm(x[0], w.get("w")), None


def _rows(lo, hi):
    def fn(x, w, s):  # a slice of rows of one projection (proj_up's x_mlstm / z halves, the FFN's gate / up halves)
        b = w.get("b")
        return linear(x[0], w["W"][lo:hi], None if b is None else b[lo:hi]), None
    return fn


def _conv_cell(x, w, s):
    # x_c = SiLU(causal conv(x) + bias); the state is the last KS-1 inputs
    B, _, F = x[0].shape
    history = s if s is not None else mx.zeros((B, w["W"].shape[-1] - 1, F), x[0].dtype)
    y, history = causal_conv(x[0], w["W"], w["b"], history)
    return nn.silu(y), history


def _headwise_cell(x, w, s):
    return headwise(x[0], w["W"], w.get("b")), None


def _mlstm_gate_cell(x, w, s):
    return linear(mx.concatenate(list(x), axis=-1), w["W"], w["b"]), None  # W [q; k; v] + b, [B, S, NH]


MLSTM_TRACE = ("h", "C_norm", "n_norm", "m")  # the mLSTM memory's outputs when traced


def _mlstm_memory_cell(x, w, s, *, num_heads, mode, chunk_size, trace=False):
    q, k, v, i, f = x
    B, S, I = q.shape
    DH = I // num_heads

    def heads(t):
        return t.reshape(B, S, num_heads, -1).transpose(0, 2, 1, 3)

    state = s if s is not None else MLSTMState.zeros(B, num_heads, DH, DH)
    # The official cell scales k by 1/sqrt(DH); the shared cell scales q. Passing q*sqrt(DH) and k/sqrt(DH) makes
    # q^T C and q^T n the official ones and C, n the official states (C = sum i' (k/sqrt(DH)) v^T).
    scale = DH**0.5
    qh, kh, vh = heads(q) * scale, heads(k) / scale, heads(v)
    ih, fh = i.transpose(0, 2, 1), f.transpose(0, 2, 1)  # [B, NH, S]
    if mode == "chunkwise":
        h, state, tr = mlstm_cell.chunkwise(qh, kh, vh, ih, fh, state, MLSTM_EPS, chunk_size, with_trace=trace)
    else:
        h, state, tr = mlstm_cell.recurrent(qh, kh, vh, ih, fh, state, MLSTM_EPS, with_trace=trace)
    h = h.transpose(0, 2, 1, 3).reshape(B, S, I)
    if not trace:
        return h, state
    # per token and head: ||C_t||_F, ||n_t||, m_t, [B, S, NH]
    return {"h": h, "C_norm": tr.C_norm.swapaxes(1, 2), "n_norm": tr.n_norm.swapaxes(1, 2), "m": tr.m.swapaxes(1, 2)}, state


def _group_norm_cell(num_heads):
    def fn(x, w, s):
        return group_norm(x[0], w.get("w"), num_heads), None
    return fn


def _skip_cell(x, w, s):
    return x[0] + w["skip"] * x[1], None  # GN(h~) + learnable_skip * x_c


def _mlstm_out_gate_cell(x, w, s):
    return x[0] * nn.silu(x[1]), None  # output gate of the mLSTM layer: SiLU(z)


def _linear_cell(x, w, s):
    return linear(x[0], w["W"], w.get("b")), None


def _residual_cell(x, w, s):
    return x[0] + x[1], None


def _slstm_memory_cell(x, w, s, *, num_heads, backend):
    B, S, D = x[0].shape
    DH = D // num_heads
    R, b = slstm_cell.vanilla_layout(w["R"], w["b"], num_heads, backend)
    state = s if s is not None else SLSTMState.zeros(B, num_heads, DH)
    seq, state = slstm_cell.sequence(tuple(t.reshape(B, S, num_heads, DH) for t in x), R, b, state)
    return {k: v.reshape(B, S, D) for k, v in seq.items()}, state


def _ffn_h_cell(act):
    def fn(x, w, s):
        return act(x[0]) * x[1], None
    return fn


def block_cells(config: OriginalConfig, kind: str, mode: str, chunk_size: int = 64, trace: bool = False) -> list[Cell]:
    """The cell table of one block of `kind` ("mlstm" | "slstm"), in execution order, for `mode`.

    With `trace` the mLSTM memory also returns per-token memory statistics (`memory.{C_norm,n_norm,m}`)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    D, bias = config.embedding_dim, config.bias
    if kind == "mlstm":
        m, I = config.mlstm, config.inner_dim
        nh = m.num_heads
        L = "xlstm."
        return [
            Cell("mlstm.norm_in", ("in",), {"w": "xlstm_norm.weight"}, _norm_cell, equation="LN(x) (1 + w)"),
            Cell("mlstm.up", ("mlstm.norm_in",), {"W": L + "proj_up.weight", **_opt(bias, b=L + "proj_up.bias")},
                 _rows(0, I), equation="x_m = W_up[:I] x"),
            Cell("mlstm.z", ("mlstm.norm_in",), {"W": L + "proj_up.weight", **_opt(bias, b=L + "proj_up.bias")},
                 _rows(I, 2 * I), equation="z = W_up[I:] x"),
            Cell("mlstm.conv", ("mlstm.up",), {"W": L + "conv1d.conv.weight", "b": L + "conv1d.conv.bias"},
                 _conv_cell, state=True, equation="x_c = SiLU(conv(x_m))"),
            Cell("mlstm.q", ("mlstm.conv",), {"W": L + "q_proj.weight", **_opt(bias, b=L + "q_proj.bias")},
                 _headwise_cell, heads=nh, equation="q = BD_q x_c"),
            Cell("mlstm.k", ("mlstm.conv",), {"W": L + "k_proj.weight", **_opt(bias, b=L + "k_proj.bias")},
                 _headwise_cell, heads=nh, equation="k = BD_k x_c"),
            Cell("mlstm.v", ("mlstm.up",), {"W": L + "v_proj.weight", **_opt(bias, b=L + "v_proj.bias")},
                 _headwise_cell, heads=nh, equation="v = BD_v x_m"),
            Cell("mlstm.igate", ("mlstm.q", "mlstm.k", "mlstm.v"),
                 {"W": L + "mlstm_cell.igate.weight", "b": L + "mlstm_cell.igate.bias"}, _mlstm_gate_cell,
                 heads=nh, equation="i = W_i [q; k; v] + b_i"),
            Cell("mlstm.fgate", ("mlstm.q", "mlstm.k", "mlstm.v"),
                 {"W": L + "mlstm_cell.fgate.weight", "b": L + "mlstm_cell.fgate.bias"}, _mlstm_gate_cell,
                 heads=nh, equation="f = W_f [q; k; v] + b_f"),
            Cell("mlstm.memory", ("mlstm.q", "mlstm.k", "mlstm.v", "mlstm.igate", "mlstm.fgate"), {},
                 partial(_mlstm_memory_cell, num_heads=nh, mode=mode, chunk_size=chunk_size, trace=trace), state=True,
                 heads=nh, primary="h" if trace else None, outputs=MLSTM_TRACE if trace else (),
                 equation="C_t = f' C + i' (k/sqrt(DH)) v^T, h~ = q^T C / max(|q^T n|, e^-m)"),
            Cell("mlstm.norm", ("mlstm.memory",), {"w": L + "mlstm_cell.outnorm.weight"}, _group_norm_cell(nh),
                 heads=nh, equation="GN(h~) (1 + w)"),
            Cell("mlstm.skip", ("mlstm.norm", "mlstm.conv"), {"skip": L + "learnable_skip"}, _skip_cell,
                 heads=nh, equation="GN(h~) + s * x_c"),
            Cell("mlstm.h", ("mlstm.skip", "mlstm.z"), {}, _mlstm_out_gate_cell, equation="(...) * SiLU(z)"),
            Cell("mlstm.out", ("mlstm.h",), {"W": L + "proj_down.weight", **_opt(bias, b=L + "proj_down.bias")},
                 _linear_cell, equation="W_down h"),
            Cell("out", ("in", "mlstm.out"), {}, _residual_cell, equation="x + mLSTM(LN(x))"),
        ]
    if kind != "slstm":
        raise ValueError(f"unknown block type {kind!r}; the original xLSTM has 'mlstm' and 'slstm'")
    s, nh = config.slstm, config.slstm.num_heads
    L = "xlstm."
    gate_src = "slstm.norm_in"
    cells = [Cell("slstm.norm_in", ("in",), {"w": "xlstm_norm.weight"}, _norm_cell, equation="LN(x) (1 + w)")]
    if s.conv1d_kernel_size > 0:
        cells.append(Cell("slstm.conv", ("slstm.norm_in",), {"W": L + "conv1d.conv.weight", "b": L + "conv1d.conv.bias"},
                          _conv_cell, state=True, equation="x_c = SiLU(conv(x))"))
        gate_src = "slstm.conv"
    cells += [
        # the official naming swap: the i slot is computed by `fgate`, the f slot by `igate`
        Cell("slstm.igate", (gate_src,), {"W": L + "fgate.weight"}, _headwise_cell, heads=nh,
             equation="W_i x_c (parameter named fgate)"),
        Cell("slstm.fgate", (gate_src,), {"W": L + "igate.weight"}, _headwise_cell, heads=nh,
             equation="W_f x_c (parameter named igate)"),
        Cell("slstm.zgate", ("slstm.norm_in",), {"W": L + "zgate.weight"}, _headwise_cell, heads=nh, equation="W_z x"),
        Cell("slstm.ogate", ("slstm.norm_in",), {"W": L + "ogate.weight"}, _headwise_cell, heads=nh, equation="W_o x"),
        Cell("slstm.memory", ("slstm.igate", "slstm.fgate", "slstm.zgate", "slstm.ogate"),
             {"R": L + "slstm_cell._recurrent_kernel_", "b": L + "slstm_cell._bias_"},
             partial(_slstm_memory_cell, num_heads=nh, backend=s.backend), state=True, heads=nh, primary="h",
             outputs=slstm_cell.OUTPUTS,
             equation="raw = Wx + R h + b; m = max(i, log sig f + m); c = f'c + i' tanh z; n = f'n + i'; h = sig(o) c/n"),
        Cell("slstm.norm", ("slstm.memory.h",), _opt(s.group_norm_weight, w=L + "group_norm.weight"),
             _group_norm_cell(nh), heads=nh, equation="GN(h) (1 + w)"),
    ]
    if config.feedforward is None:
        return cells + [Cell("out", ("in", "slstm.norm"), {}, _residual_cell, equation="x + sLSTM(LN(x))")]
    F, fb = config.ffn_dim, config.feedforward.bias
    cells += [
        Cell("mid", ("in", "slstm.norm"), {}, _residual_cell, equation="y = x + sLSTM(LN(x))"),
        Cell("ffn.norm_in", ("mid",), {"w": "ffn_norm.weight"}, _norm_cell, equation="LN(y) (1 + w)"),
        Cell("ffn.gate", ("ffn.norm_in",), {"W": "ffn.proj_up.weight", **_opt(fb, b="ffn.proj_up.bias")},
             _rows(0, F), equation="g = W_up[:F] y"),
        Cell("ffn.up", ("ffn.norm_in",), {"W": "ffn.proj_up.weight", **_opt(fb, b="ffn.proj_up.bias")},
             _rows(F, 2 * F), equation="u = W_up[F:] y"),
        Cell("ffn.h", ("ffn.gate", "ffn.up"), {}, _ffn_h_cell(ACTIVATIONS[config.feedforward.act_fn]),
             equation=f"{config.feedforward.act_fn}(g) * u"),
        Cell("ffn.out", ("ffn.h",), {"W": "ffn.proj_down.weight", **_opt(fb, b="ffn.proj_down.bias")}, _linear_cell,
             equation="W_down h"),
        Cell("out", ("mid", "ffn.out"), {}, _residual_cell, equation="y + FFN(LN(y))"),
    ]
    return cells


def run_block(cells: list[Cell], x: mx.array, weights: dict[str, mx.array], prefix: str, state: dict | None,
              observer: Callable[[str, mx.array], None] | None = None) -> tuple[mx.array, dict]:
    """Run one block's table. `weights` holds the checkpoint tensors by full name; `prefix` is the block's name
    prefix in the checkpoint; `state` maps stateful cell names to their state (None: fresh)."""
    values: dict[str, mx.array] = {"in": x}
    new_state: dict[str, Any] = {}
    for cell in cells:
        w = {arg: weights[prefix + name] for arg, name in cell.weights.items()}
        out, st = cell.fn(tuple(values[n] for n in cell.inputs), w, (state or {}).get(cell.name))
        if cell.state:
            new_state[cell.name] = st
        if cell.primary is not None:
            for key, value in out.items():
                values[f"{cell.name}.{key}"] = value
            values[cell.name] = out[cell.primary]
        else:
            values[cell.name] = out
        if observer is not None:
            if cell.primary is not None:
                for key in cell.outputs:
                    observer(f"{cell.name}.{key}", out[key])
            else:
                observer(cell.name, out)
    return values["out"], new_state


# ----------------------------------------------------------------------------------------------------------- model


class OriginalXLSTM:
    """`xLSTMLMModel` in MLX: `model(ids, state=None, mode="chunkwise"|"recurrent", observer=None)` -> (logits, state).

    The state is a list with one dict per block: {"mlstm.conv": [B, KS-1, I], "mlstm.memory": MLSTMState(C, n, m)}
    or {"slstm.conv": [B, KS-1, D], "slstm.memory": SLSTMState(c, n, m, h)}. "chunkwise" runs the mLSTM in its
    chunkwise-parallel form (chunk_size tokens per chunk) and "recurrent" token by token like the official `step`;
    the sLSTM is sequential in both. Passing the returned state continues the sequence (prefill, then step)."""

    block_kind = "original"

    def __init__(self, config: OriginalConfig, weights: dict[str, mx.array] | None = None, chunk_size: int = 64):
        if not isinstance(chunk_size, int) or chunk_size <= 0:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        self.config = config
        self.chunk_size = chunk_size
        self.weights = dict(weights or {})
        self.source: str | None = None
        # (mode, traced) -> one cell table per block; traced tables serve calls with an observer
        self._tables = {(mode, trace): [block_cells(config, k, mode, chunk_size, trace) for k in config.block_types]
                        for mode in MODES for trace in (False, True)}

    def cells(self, block: int, mode: str = "chunkwise", trace: bool = False) -> list[Cell]:
        return self._tables[mode, trace][block]

    def probe_names(self) -> list[str]:
        """What an observer sees, in order (a recurrent call repeats the block probes once per token)."""
        names = ["embedding"]
        for b, cells in enumerate(self._tables["chunkwise", True]):
            names.append(f"blocks.{b}.in")
            for cell in cells:
                keys = cell.outputs if cell.primary else (None,)
                names += [f"blocks.{b}.{cell.name}" + (f".{k}" if k else "") for k in keys]
        return names + ["out_norm", "logits"]

    def checkpoint_shapes(self) -> dict[str, tuple[int, ...]]:
        return self.config.checkpoint_shapes()

    def summary(self) -> str:
        c = self.config
        params = sum(v.size for v in self.weights.values())
        kinds = ", ".join(f"{b}:{k}" for b, k in enumerate(c.block_types))
        return (f"original xLSTM (xLSTMLMModel): embedding_dim={c.embedding_dim}, vocab_size={c.vocab_size}, "
                f"{c.num_blocks} blocks [{kinds}], {params:,} parameters"
                + (f", sLSTM backend layout {c.slstm.backend!r}" if c.slstm is not None and "slstm" in c.block_types else ""))

    def _check_state(self, state, batch: int) -> None:
        if not isinstance(state, list) or len(state) != self.config.num_blocks:
            raise ValueError(f"state must be a list of {self.config.num_blocks} per-block dicts (as returned by the "
                             f"model), got {type(state).__name__} of length {len(state) if hasattr(state, '__len__') else '?'}")
        for b, entry in enumerate(state):
            expected = {c.name for c in self._tables["chunkwise", False][b] if c.state}
            if not isinstance(entry, dict) or set(entry) != expected:
                raise ValueError(f"state of block {b} must hold {sorted(expected)}, got "
                                 f"{sorted(entry) if isinstance(entry, dict) else type(entry).__name__}")
            for name, value in entry.items():
                arrays = value.arrays() if hasattr(value, "arrays") else (value,)
                if arrays[0].shape[0] != batch:
                    raise ValueError(f"state of block {b} cell {name!r} has batch {arrays[0].shape[0]}, ids have {batch}")

    def __call__(self, ids, state: list[dict] | None = None, mode: str = "chunkwise",
                 observer: Callable[[str, mx.array], None] | None = None) -> tuple[mx.array, list[dict]]:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        ids = mx.array(ids)
        if ids.ndim != 2 or ids.shape[1] == 0 or not mx.issubdtype(ids.dtype, mx.integer):
            raise ValueError(f"ids must be a non-empty integer array [batch, tokens], got shape {ids.shape} {ids.dtype}")
        lo, hi = mx.min(ids).item(), mx.max(ids).item()
        if lo < 0 or hi >= self.config.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}), got range [{lo}, {hi}]")
        if state is not None:
            self._check_state(state, ids.shape[0])
        emit = observer or (lambda name, value: None)
        W = self.weights
        x = W["token_embedding.weight"][ids]
        emit("embedding", x)
        if mode == "recurrent":
            # token by token through the whole stack, like the official `step`
            outs = []
            for t in range(ids.shape[1]):
                y, state = self._stack(x[:, t : t + 1], state, ("recurrent", observer is not None), emit)
                outs.append(y)
            h = mx.concatenate(outs, axis=1)
        else:
            h, state = self._stack(x, state, ("chunkwise", observer is not None), emit)
        h = layer_norm(h, W["xlstm_block_stack.post_blocks_norm.weight"]) if self.config.add_post_blocks_norm else h
        emit("out_norm", h)
        logits = linear(h, W["lm_head.weight"] if not self.config.tie_weights else W["token_embedding.weight"])
        emit("logits", logits)
        return logits, state

    def _stack(self, x, state, table, emit):
        new_state = []
        for b, cells in enumerate(self._tables[table]):
            name = f"blocks.{b}."

            def obs(n, v, name=name):
                emit(name + n, v)

            emit(name + "in", x)
            x, st = run_block(cells, x, self.weights, f"xlstm_block_stack.blocks.{b}.", None if state is None else state[b], obs)
            new_state.append(st)
        return x, new_state


# ----------------------------------------------------------------------------------------------------------- loading


class OriginalCheckpointError(CheckpointError):
    """Tensors that do not match the original-xLSTM config (lists every missing, unexpected, mis-shaped one)."""


def _tensor_files(folder: Path) -> dict[str, Path]:
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise OriginalCheckpointError(f"{index.name}: cannot read 'weight_map' ({err!r})") from None
        return {name: folder / f for name, f in weight_map.items()}
    if single.exists():
        return {"": single}
    raise FileNotFoundError(f"{folder} has neither model.safetensors nor model.safetensors.index.json "
                            f"(it holds: {sorted(p.name for p in folder.iterdir())})")


def read_shapes(folder: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, Path]]:
    """Tensor name -> shape and -> file, from the safetensors headers only (no tensor data read)."""
    from safetensors import safe_open

    files = _tensor_files(folder)
    shapes, where = {}, {}
    for path in sorted(set(files.values())):
        if not path.exists():
            raise OriginalCheckpointError(f"the index names a shard that does not exist: {path.name}")
        try:
            with safe_open(str(path), framework="numpy") as fh:
                for name in fh.keys():
                    shapes[name] = tuple(fh.get_slice(name).get_shape())
                    where[name] = path
        except Exception as err:  # noqa: BLE001 - re-raised with the file named
            raise OriginalCheckpointError(f"{path.name} is not a readable safetensors file (truncated or corrupt?): "
                                          f"{err}") from None
    if "" not in files:  # an index: it and the shards must agree tensor by tensor
        problems = [f"  {n}: the index maps it to {f.name}, but that file does not hold it"
                    for n, f in files.items() if where.get(n) != f]
        problems += [f"  {n}: stored in {f.name}, but the index does not map it there"
                     for n, f in where.items() if files.get(n) != f]
        if problems:
            raise OriginalCheckpointError(f"checkpoint {folder} index and shards disagree:\n" + "\n".join(problems))
    return shapes, where


def validate_shapes(expected: dict[str, tuple], found: dict[str, tuple], folder: Path, config: OriginalConfig) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if config.tie_weights and "lm_head.weight" in unexpected and found["lm_head.weight"] == expected.get(
            "token_embedding.weight"):
        unexpected.remove("lm_head.weight")  # a tied head saved under both names (checked equal at load)
    mismatched = sorted(k for k in set(expected) & set(found) if tuple(expected[k]) != tuple(found[k]))
    if not (missing or unexpected or mismatched):
        return
    lines = [f"checkpoint {folder} does not match its config.json (original xLSTM, xLSTMLMModel):"]
    lines += [f"  missing:    {k}  expected shape {list(expected[k])}" for k in missing]
    lines += [f"  unexpected: {k}  shape {list(found[k])}" for k in unexpected]
    for k in mismatched:
        hint = ""
        if k.endswith("_recurrent_kernel_") and sorted(found[k]) == sorted(expected[k]):
            other = "cuda" if config.slstm.backend == "vanilla" else "vanilla"
            hint = f" (the {other} backend layout? config says backend {config.slstm.backend!r})"
        lines.append(f"  mis-shaped: {k}  expected {list(expected[k])}, found {list(found[k])}{hint}")
    raise OriginalCheckpointError("\n".join(lines))


DTYPES = {"float32": mx.float32, "bfloat16": mx.bfloat16, "float16": mx.float16}


def load_original(path: str | Path, dtype: str = "float32", chunk_size: int = 64) -> OriginalXLSTM:
    """Load a folder with config.json (xLSTMLMModelConfig fields) and model.safetensors (official names), strictly."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist or is not a folder")
    if dtype != "float32":
        # Weights stored in bfloat16/float16 are widened on load; a reduced-precision compute path is not validated.
        raise ValueError(f"the original xLSTM computes in float32 only (weights of any stored dtype are widened); "
                         f"got dtype={dtype!r}")
    config = OriginalConfig.from_json(folder / "config.json")
    found, where = read_shapes(folder)
    validate_shapes(config.checkpoint_shapes(), found, folder, config)
    weights: dict[str, mx.array] = {}
    for file in sorted(set(where.values())):
        for name, array in mx.load(str(file)).items():
            weights[name] = array.astype(mx.float32)
    if config.tie_weights and "lm_head.weight" in weights:
        if not mx.array_equal(weights["lm_head.weight"], weights["token_embedding.weight"]).item():
            raise OriginalCheckpointError(
                f"checkpoint {folder}: tie_weights is true but lm_head.weight differs from token_embedding.weight")
        del weights["lm_head.weight"]
    mx.eval(weights)
    model = OriginalXLSTM(config, weights, chunk_size=chunk_size)
    model.source = str(folder)
    return model
