"""Model configuration, read from a checkpoint's config.json (NX-AI / transformers xLSTM format)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from xlstm_viz.dims import MLSTMBlockDims, mlstm_block_dims, up_proj_dim


class ConfigError(ValueError):
    """A config.json that cannot describe a model (names the field and the value)."""


# Field types for the validation (pydantic, strict mode: "0.5" is not a number, 1 is not a bool, 2.0 is not an int;
# an int is a valid float). The dataclass ignores the Annotated metadata, pydantic reads it.
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
TokenId = Optional[Annotated[int, Field(ge=0)]]
StorageDtype = Literal["float32", "bfloat16", "float16"]


class ValidatedConfig:
    """Mixin for config dataclasses: every field is type- and range-checked from its annotation by pydantic when the
    object is made (and again by `validate()`, e.g. before modules are built), then `check_consistency()` runs the
    checks between fields. Errors are one ConfigError listing every bad field with its value. A new config format
    (e.g. the original xLSTM's) declares its fields with these annotations and gets the same checks."""

    _UNCHECKED = frozenset({"extra"})

    def __post_init__(self) -> None:
        self.validate()
        object.__setattr__(self, "_made", True)

    def __setattr__(self, name: str, value) -> None:
        """A field assigned after the config was made gets its type and range check at once (a model reads its
        config on every call: `model.config.chunk_size = 0` failed inside the forward with ZeroDivisionError); a
        refused value leaves the field as it was. The checks between fields wait for `validate()` (before a model is
        built), so that related fields can be changed one after the other."""
        if self.__dict__.get("_made") and name not in self._UNCHECKED:
            adapter = self._field_adapters().get(name)
            if adapter is not None:
                try:
                    adapter.validate_python(value)
                except ValidationError as err:
                    e = err.errors()[0]
                    raise ConfigError(f"config field {name!r} = {value!r} ({type(value).__name__}): "
                                      f"{e['msg'][0].lower()}{e['msg'][1:]}") from None
            # counted, so that what reads the config once (a compiled graph, XLSTM.graph_signature) sees the change
            object.__setattr__(self, "_version", self.__dict__.get("_version", 0) + 1)
        object.__setattr__(self, name, value)

    @property
    def version(self) -> int:
        """How many fields were assigned since the config was made."""
        return self.__dict__.get("_version", 0)

    @classmethod
    def _field_adapters(cls) -> dict:
        adapters = cls.__dict__.get("_pydantic_adapters")
        if adapters is None:
            hints = get_type_hints(cls, include_extras=True)
            adapters = {name: TypeAdapter(hints[name], config=ConfigDict(strict=True))
                        for name in cls._field_model().model_fields}
            cls._pydantic_adapters = adapters
        return adapters

    @classmethod
    def _field_model(cls) -> type[BaseModel]:
        model = cls.__dict__.get("_pydantic_fields")
        if model is None:
            hints = get_type_hints(cls, include_extras=True)
            specs = {f.name: (hints[f.name], ...) for f in dataclasses.fields(cls) if f.name not in cls._UNCHECKED}
            model = create_model(f"{cls.__name__}Fields", __config__=ConfigDict(strict=True, extra="forbid"), **specs)
            cls._pydantic_fields = model
        return model

    def validate(self) -> None:
        model = self._field_model()
        try:
            model(**{name: getattr(self, name) for name in model.model_fields})
        except ValidationError as err:
            lines = []
            for e in err.errors():
                field_name = str(e["loc"][0]) + "".join(f"[{i}]" for i in e["loc"][1:])
                value = e["input"]
                lines.append(f"config field {field_name!r} = {value!r} ({type(value).__name__}): "
                             f"{e['msg'][0].lower()}{e['msg'][1:]}")
            raise ConfigError("\n".join(lines)) from None
        self.check_consistency()

    def check_consistency(self) -> None:
        """Checks between fields; the fields themselves are valid when this runs."""


@dataclass
class XLSTMConfig(ValidatedConfig):
    """Fields of `xLSTMLargeConfig` (xlstm 2.0.6) with the 7B's values as defaults where they are architecture.

    Kernel names are kept as given and never interpreted: MLX has its own kernels, so an unknown name is not an error.
    `mode`, `return_last_states` and `autocast_kernel_dtype` are kept and written back but select nothing here (the
    forward always returns the states; `compute_dtype` of XLSTM / load_model sets the activations' dtype).
    `norm_reduction_force_float32` must be True and `inference_state_dtype` "float32": what this forward computes.
    Every field is validated when the config is made (see ValidatedConfig).
    """

    embedding_dim: PositiveInt = 4096
    num_heads: PositiveInt = 8
    num_blocks: PositiveInt = 32
    vocab_size: PositiveInt = 50304
    use_bias: bool = False
    norm_eps: PositiveFloat = 1e-6
    norm_reduction_force_float32: bool = True
    add_out_norm: bool = True
    qk_dim_factor: PositiveFloat = 0.5
    v_dim_factor: PositiveFloat = 1.0
    ffn_proj_factor: PositiveFloat = 2.667
    ffn_round_up_to_multiple_of: PositiveInt = 64
    gate_soft_cap: PositiveFloat = 15.0
    output_logit_soft_cap: Optional[PositiveFloat] = 30.0  # None: no cap (the original xLSTM's head)
    # The final norm: the 7B's RMSNorm, or the original xLSTM's LayerNorm with its weight stored as an offset from 1
    # (a model converted from an xLSTMLMModel checkpoint, xlstm_viz.model.convert).
    out_norm_type: Literal["rmsnorm", "layernorm_offset"] = "rmsnorm"
    weight_mode: Literal["single", "fused"] = "single"
    chunk_size: PositiveInt = 64
    eps: PositiveFloat = 1e-6
    mode: Literal["inference", "train", "train_with_padding"] = "inference"
    return_last_states: bool = True
    chunkwise_kernel: str = "chunkwise--triton_xl_chunk"
    sequence_kernel: str = "native_sequence__triton"
    step_kernel: str = "triton"
    autocast_kernel_dtype: StorageDtype = "bfloat16"
    inference_state_dtype: StorageDtype = "float32"
    # True: lm_head is the embedding matrix (logits = out_norm(x) @ E^T); no lm_head.weight is loaded or saved.
    tie_word_embeddings: bool = False
    bos_token_id: TokenId = 0
    eos_token_id: TokenId = 2
    pad_token_id: TokenId = 1
    # Per-block layer types for mixed stacks (roadmap: sLSTM, CfC). None means every block is "mlstm".
    block_types: Optional[list[Annotated[str, Field(min_length=1)]]] = None
    # Heads of the "slstm" blocks of a mixed stack (the official sLSTM layer has its own num_heads); None = num_heads.
    slstm_num_heads: Optional[PositiveInt] = None
    # Sizes of the original xLSTM's blocks (layer types "orig_mlstm" and "slstm"), as an xLSTMLMModel config sets them
    # (xlstm_viz.model.convert); the defaults are xlstm 2.0.6's. Unused by "mlstm" blocks; not written when default.
    orig_mlstm_inner_dim: Optional[PositiveInt] = None  # None: proj_factor 2 x embedding_dim rounded up to 64
    orig_mlstm_qkv_blocksize: PositiveInt = 4  # block size of the block-diagonal q, k, v
    orig_mlstm_conv_kernel: PositiveInt = 4
    slstm_conv_kernel: NonNegativeInt = 4  # 0: no conv (the sLSTM's input and forget gates read the normed input)
    slstm_ffn_dim: Optional[PositiveInt] = None  # the sLSTM FFN's width; None: ffn_dim (ffn_proj_factor's rule)
    slstm_ffn_act: Optional[Literal["gelu", "relu", "relu^2", "sigmoid", "swish", "selu"]] = "gelu"  # None: no FFN
    # Keys of config.json that are not fields here (HF extras); kept so that save() writes them back.
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # -- derived sizes: one derivation (xlstm_viz.dims) shared with the block wiring and the loader --
    @property
    def dims(self) -> MLSTMBlockDims:
        return mlstm_block_dims(self.embedding_dim, self.num_heads, self.qk_dim_factor, self.v_dim_factor,
                                self.ffn_proj_factor, self.ffn_round_up_to_multiple_of)

    @property
    def qk_dim(self) -> int:
        return self.dims.qk_dim

    @property
    def v_dim(self) -> int:
        return self.dims.v_dim

    @property
    def qk_head_dim(self) -> int:
        return self.dims.qk_head_dim

    @property
    def v_head_dim(self) -> int:
        return self.dims.v_head_dim

    @property
    def ffn_dim(self) -> int:
        return self.dims.ffn_dim

    @property
    def orig_mlstm_dim(self) -> int:
        """The inner width of an "orig_mlstm" block (the official mLSTM layer's proj_up output per half)."""
        if self.orig_mlstm_inner_dim is not None:
            return self.orig_mlstm_inner_dim
        return up_proj_dim(2.0, self.embedding_dim, 64, True)

    @property
    def slstm_ffn_width(self) -> int:
        return self.slstm_ffn_dim if self.slstm_ffn_dim is not None else self.ffn_dim

    def layer_types(self) -> list[str]:
        return list(self.block_types) if self.block_types else ["mlstm"] * self.num_blocks

    def check_consistency(self) -> None:
        # the 7B block's q/k and v widths; a stack without "mlstm" blocks has none (an original mLSTM's heads split
        # its inner width, checked below)
        for name, dim in (("qk_dim", self.qk_dim), ("v_dim", self.v_dim)) if "mlstm" in self.layer_types() else ():
            if dim <= 0 or dim % self.num_heads:
                raise ConfigError(
                    f"{name} = int(embedding_dim * {name}_factor) = {dim} must be a positive multiple of "
                    f"num_heads = {self.num_heads}"
                )
        if "orig_mlstm" in self.layer_types():
            inner = self.orig_mlstm_dim
            for name, value in (("num_heads", self.num_heads), ("orig_mlstm_qkv_blocksize", self.orig_mlstm_qkv_blocksize)):
                if inner % value:
                    raise ConfigError(f"config field {name!r} = {value} must divide the orig_mlstm inner width {inner} "
                                      f"(orig_mlstm_inner_dim)")
        # Two fields of xLSTMLargeConfig that change the official computation and that this forward cannot follow:
        # it reduces every norm in float32 and keeps every state in float32 whatever they say. Refused rather than
        # read and ignored (a bf16 reduction or bf16 state asked for would silently not happen).
        if not self.norm_reduction_force_float32:
            raise ConfigError("config field 'norm_reduction_force_float32' = False: xlstm-viz reduces every norm in "
                              "float32; only True is supported")
        if self.inference_state_dtype != "float32":
            raise ConfigError(f"config field 'inference_state_dtype' = {self.inference_state_dtype!r}: xlstm-viz keeps "
                              "the memory states in float32; only 'float32' is supported")
        if self.block_types is not None and len(self.block_types) != self.num_blocks:
            raise ConfigError(
                f"config field 'block_types' has {len(self.block_types)} entries but num_blocks = {self.num_blocks}"
            )

    # -- I/O --
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "XLSTMConfig":
        d = dict(d)
        # The HF aliases default to 4096/32 in transformers, so the xlstm names win whenever both are present.
        for name, alias in (("embedding_dim", "hidden_size"), ("num_blocks", "num_hidden_layers")):
            if name not in d and alias in d:
                d[name] = d[alias]
        # LFM2-style configs spell the per-block types `layer_types`; it is the same list as `block_types`.
        if "layer_types" in d:
            layer_types = d.pop("layer_types")
            if d.get("block_types") is not None and d["block_types"] != layer_types:
                raise ConfigError(
                    f"config fields 'layer_types' {layer_types!r} and 'block_types' {d['block_types']!r} disagree; "
                    "give one of them")
            d["block_types"] = layer_types
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names}
        return cls(**known, extra=extra)

    @classmethod
    def from_json(cls, path: str | Path) -> "XLSTMConfig":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no config.json at {path}") from None
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON: {err}") from None
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path} is not UTF-8 text ({err})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a JSON object, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except ConfigError as err:
            raise ConfigError(f"{path}:\n{err}") from None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.extra)
        d.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        for name in ("block_types", "slstm_num_heads"):  # unset: not written (7B configs stay as they were)
            if d.get(name) is None:
                d.pop(name)
        for f in dataclasses.fields(self):  # the original blocks' sizes: written only when not the default
            if f.name.startswith(("orig_mlstm_", "slstm_conv", "slstm_ffn")) and d[f.name] == f.default:
                d.pop(f.name)
        if d.get("out_norm_type") == "rmsnorm":  # the default is not written: the official xLSTMLarge has no such field
            d.pop("out_norm_type")
        # Keep the HF aliases consistent so transformers reads small models correctly.
        d.update(hidden_size=self.embedding_dim, num_hidden_layers=self.num_blocks)
        d.setdefault("model_type", "xlstm")
        d.setdefault("architectures", ["xLSTMForCausalLM"])
        return d
