"""Model configuration, read from a checkpoint's config.json (NX-AI / transformers xLSTM format)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlstm_viz.dims import MLSTMBlockDims, mlstm_block_dims


class ConfigError(ValueError):
    """A config.json that cannot describe a model (names the field and the value)."""


@dataclass
class XLSTMConfig:
    """Fields of `xLSTMLargeConfig` (xlstm 2.0.6) with the 7B's values as defaults where they are architecture.

    Kernel names are kept as given and never interpreted: MLX has its own kernels, so an unknown name is not an error.
    """

    embedding_dim: int = 4096
    num_heads: int = 8
    num_blocks: int = 32
    vocab_size: int = 50304
    use_bias: bool = False
    norm_eps: float = 1e-6
    norm_reduction_force_float32: bool = True
    add_out_norm: bool = True
    qk_dim_factor: float = 0.5
    v_dim_factor: float = 1.0
    ffn_proj_factor: float = 2.667
    ffn_round_up_to_multiple_of: int = 64
    gate_soft_cap: float = 15.0
    output_logit_soft_cap: float = 30.0
    weight_mode: str = "single"
    chunk_size: int = 64
    eps: float = 1e-6
    mode: str = "inference"
    return_last_states: bool = True
    chunkwise_kernel: str = "chunkwise--triton_xl_chunk"
    sequence_kernel: str = "native_sequence__triton"
    step_kernel: str = "triton"
    autocast_kernel_dtype: str = "bfloat16"
    inference_state_dtype: str = "float32"
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 0
    eos_token_id: int | None = 2
    pad_token_id: int | None = 1
    # Per-block layer types for mixed stacks (roadmap: sLSTM, CfC). None means every block is "mlstm".
    block_types: list[str] | None = None
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

    def layer_types(self) -> list[str]:
        return list(self.block_types) if self.block_types else ["mlstm"] * self.num_blocks

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "num_heads", "num_blocks", "vocab_size", "chunk_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"config field {name!r} must be a positive integer, got {value!r}")
        for name, dim in (("qk_dim", self.qk_dim), ("v_dim", self.v_dim)):
            if dim <= 0 or dim % self.num_heads:
                raise ConfigError(
                    f"{name} = int(embedding_dim * {name}_factor) = {dim} must be a positive multiple of "
                    f"num_heads = {self.num_heads}"
                )
        if self.weight_mode not in ("single", "fused"):
            raise ConfigError(f"config field 'weight_mode' must be 'single' or 'fused', got {self.weight_mode!r}")
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
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a JSON object, got {type(data).__name__}")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.extra)
        d.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        if d.get("block_types") is None:
            d.pop("block_types")
        # Keep the HF aliases consistent so transformers reads small models correctly.
        d.update(hidden_size=self.embedding_dim, num_hidden_layers=self.num_blocks)
        d.setdefault("model_type", "xlstm")
        d.setdefault("architectures", ["xLSTMForCausalLM"])
        return d
