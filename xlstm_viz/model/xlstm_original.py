"""The original xLSTM language model's checkpoint format (`xlstm.xLSTMLMModel` of xlstm 2.0.6): config and loading.

    x_0   = E[ids]
    x_l+1 = x_l + mLSTMLayer(LN(x_l))                                   (mLSTM block, no FFN)
    x_l+1 = y + FFN(LN(y)),  y = x_l + sLSTMLayer(LN(x_l))              (sLSTM block)
    logits = W_lm LN(x_L)                                                (no soft-cap)

The model itself is the block-registry `XLSTM`: `load_original` validates config.json (`OriginalConfig`, every
field named when wrong) and the official tensors (names and shapes, `validate_shapes`), then
`xlstm_viz.model.convert.registry_model` renames them into an `XLSTM` whose mLSTM blocks are "orig_mlstm" blocks
(equations: xlstm_viz/model/orig_mlstm_block.py) and sLSTM blocks "slstm" blocks (xlstm_viz/model/slstm_block.py),
with the official sizes in the config (`orig_mlstm_inner_dim`, `orig_mlstm_qkv_blocksize`, `orig_mlstm_conv_kernel`,
`slstm_conv_kernel`, `slstm_ffn_dim`, `slstm_ffn_act`). So the original model runs through the one forward
(xlstm_viz/model/forward.py), with traces, interventions, the debugger and the dashboard.

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
from pathlib import Path
from typing import Any, ClassVar

import xlstm_viz.blas  # noqa: F401  (fast BLAS must be bound before MLX loads)
import mlx.core as mx

from xlstm_viz.checkpoint import CheckpointError
from xlstm_viz.config import ConfigError
from xlstm_viz.dims import up_proj_dim as round_up_dim  # UpProjConfigMixin's rule
from xlstm_viz.model.activations import FFN_ACTIVATIONS as ACTIVATIONS
from xlstm_viz.model.convert import registry_model
from xlstm_viz.model.xlstm import XLSTM


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


def load_original(path: str | Path, dtype: str = "float32", chunk_size: int = 64, progress: bool | None = None) -> XLSTM:
    """Load a folder with config.json (xLSTMLMModelConfig fields) and model.safetensors (official names), strictly,
    into the block-registry `XLSTM` (xlstm_viz.model.convert). `chunk_size`: the mLSTM's chunk length in
    mode="chunkwise" (the config's `chunk_size`). `progress`: a bar over the files read (None: when there are
    several), as load_model's. Tensors that hold NaN or Inf load as stored, with a NonFiniteWeightsWarning."""
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
    import warnings

    from tqdm.auto import tqdm

    from xlstm_viz.checkpoint import NonFiniteWeightsWarning, _check_finite

    weights: dict[str, mx.array] = {}
    nonfinite: dict[str, str] = {}
    files = sorted(set(where.values()))
    show = progress if progress is not None else len(files) > 1
    for file in tqdm(files, desc="loading shards", unit="shard", disable=not show):
        for name, array in mx.load(str(file)).items():
            weights[name] = array.astype(mx.float32)
            _check_finite(name, weights[name], nonfinite)
    if nonfinite:  # as load_model says of every checkpoint: loaded as stored, named in one warning
        names = sorted(nonfinite)
        warnings.warn(f"checkpoint {folder}: {len(names)} tensors hold NaN/Inf values (loaded as stored): "
                      + "; ".join(nonfinite[n] for n in names[:20]) + (" ..." if len(names) > 20 else ""),
                      NonFiniteWeightsWarning, stacklevel=3)
    if config.tie_weights and "lm_head.weight" in weights:
        if not mx.array_equal(weights["lm_head.weight"], weights["token_embedding.weight"]).item():
            raise OriginalCheckpointError(
                f"checkpoint {folder}: tie_weights is true but lm_head.weight differs from token_embedding.weight")
        del weights["lm_head.weight"]
    model = registry_model(config, weights, chunk_size=chunk_size)
    model.source = str(folder)
    return model
