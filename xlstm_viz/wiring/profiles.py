"""HyperProfiles: named, validated bundles of initialisation settings.

A profile is JSON (bundled ones live in `xlstm_viz/wiring/profiles/*.json`) with the fields of `HyperProfile`,
validated with pydantic (strict types, no unknown fields; an error names the field path and the value).
`initializers` maps a parameter kind (see `parameter_kind`) to a distribution:

    {"dist": "constant", "value": v}
    {"dist": "normal", "std": s, "mean": m (default 0), "scale": "fan_in" (optional: std / sqrt(shape[-1]))}
    {"dist": "uniform", "low": a, "high": b}
    {"dist": "linspace", "low": a, "high": b}   # evenly spaced along the last axis, e.g. fgate bias over heads

`extras` is free-form metadata kept with the profile (it changes no computation). A model initialised from scratch
calls `profile.init_parameter(name, shape, rng)` per parameter (`XLSTM(config, init_profile=...)`).
Profiles once had `constraints` and `solver` fields; nothing read them, so they were removed and are refused.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, Mapping, Union

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, ValidationError, model_validator

# Kinds used when no initializer of their own is given.
_FALLBACK_KIND = {"lm_head": "linear"}


def parameter_kind(name: str) -> str:
    """The initializer kind of an xLSTM parameter, from its (full or block-relative) checkpoint name."""
    if name.endswith("igate_preact.bias"):
        return "igate_bias"
    if name.endswith("fgate_preact.bias"):
        return "fgate_bias"
    if name.endswith(("igate_preact.weight", "fgate_preact.weight")):
        return "gate_weight"
    if name.endswith(("embeddings.weight", "embedding.weight")):
        return "embedding"
    if name == "lm_head.weight" or name.endswith(".lm_head.weight"):
        return "lm_head"
    last = name.split(".")[-2] if "." in name else ""
    if name.endswith(".weight") and "norm" in last:
        return "norm"
    if name.endswith(".weight"):
        return "linear"
    if name.endswith(".bias"):
        return "bias"
    raise ValueError(f"no initializer kind for parameter {name!r}")


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    return value


Number = Annotated[float, Field(strict=True), AfterValidator(_finite)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Constant(_Spec):
    dist: Literal["constant"]
    value: Number


class Normal(_Spec):
    dist: Literal["normal"]
    std: Annotated[Number, Field(ge=0)]
    mean: Number = 0.0
    scale: Literal["fan_in"] | None = None


class Uniform(_Spec):
    dist: Literal["uniform"]
    low: Number
    high: Number

    @model_validator(mode="after")
    def _ordered(self):
        if self.low > self.high:
            raise ValueError(f"low {self.low!r} is above high {self.high!r}")
        return self


class Linspace(_Spec):
    dist: Literal["linspace"]
    low: Number
    high: Number


Initializer = Annotated[Union[Constant, Normal, Uniform, Linspace], Field(discriminator="dist")]


def _read_only(mapping):
    return MappingProxyType(dict(mapping))


class HyperProfile(BaseModel):
    """A validated, immutable profile (pydantic): name, description, backends, initializers, extras."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: Annotated[StrictStr, Field(min_length=1)]
    description: StrictStr
    source_backend: StrictStr
    target_backend: StrictStr
    initializers: Annotated[Mapping[str, Initializer], AfterValidator(_read_only)]
    extras: Annotated[Mapping[str, Any], AfterValidator(_read_only)] = MappingProxyType({})

    # -- JSON ------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping, origin: str = "profile") -> "HyperProfile":
        if not isinstance(data, Mapping):
            raise ValueError(f"{origin}: a profile must be a JSON object, got {type(data).__name__}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as err:
            raise ValueError(f"{origin}: " + "; ".join(_describe(e) for e in err.errors())) from None

    @classmethod
    def from_json(cls, text: str, origin: str = "profile") -> "HyperProfile":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{origin}: not valid JSON: {err}") from None
        return cls.from_dict(data, origin)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "source_backend": self.source_backend,
            "target_backend": self.target_backend,
            "initializers": {k: v.model_dump(exclude_defaults=True) | {"dist": v.dist} for k, v in self.initializers.items()},
            "extras": json.loads(json.dumps(dict(self.extras))),
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    # -- initialisation --------------------------------------------------------------------------
    def init_array(self, kind: str, shape, rng: np.random.Generator) -> np.ndarray:
        """float32 array of `shape` drawn from the `kind` initializer with `rng`."""
        if kind not in self.initializers:
            raise KeyError(f"profile {self.name!r} has no initializer for {kind!r}; it has {sorted(self.initializers)}")
        spec = self.initializers[kind]
        shape = tuple(int(d) for d in shape)
        if isinstance(spec, Constant):
            values = np.full(shape, spec.value)
        elif isinstance(spec, Normal):
            std = spec.std
            if spec.scale == "fan_in":
                if not shape:
                    raise ValueError(f"{kind}: fan_in scaling needs at least one dimension, got shape {shape}")
                std = std / math.sqrt(shape[-1])
            values = rng.normal(spec.mean, std, size=shape)
        elif isinstance(spec, Uniform):
            values = rng.uniform(spec.low, spec.high, size=shape)
        else:
            if not shape:
                raise ValueError(f"{kind}: linspace needs at least one dimension, got shape {shape}")
            values = np.broadcast_to(np.linspace(spec.low, spec.high, shape[-1]), shape)
        return np.ascontiguousarray(values, dtype=np.float32)

    def init_parameter(self, name: str, shape, rng: np.random.Generator) -> np.ndarray:
        """`init_array` for a checkpoint parameter name (kind from `parameter_kind`)."""
        kind = parameter_kind(name)
        if kind not in self.initializers and kind in _FALLBACK_KIND:
            kind = _FALLBACK_KIND[kind]
        return self.init_array(kind, shape, rng)


def _describe(error: dict) -> str:
    # pydantic adds the union tag to the location (initializers.linear.normal.std); the tag is the dist, named already.
    loc = [str(p) for p in error["loc"] if p not in ("constant", "normal", "uniform", "linspace")]
    where = ".".join(loc) or "(profile)"
    if error["type"] == "missing":
        return f"{where}: missing"
    if error["type"] == "extra_forbidden":
        if where in ("constraints", "solver"):
            return f"{where}: unknown field (profiles no longer have 'constraints' or 'solver': nothing read them)"
        return f"{where}: unknown field"
    shown = repr(error.get("input"))
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return f"{where}: {error['msg']} (got {shown})"


def _bundled():
    return resources.files("xlstm_viz.wiring").joinpath("profiles")


def list_profiles() -> list[str]:
    """Names of the bundled profiles."""
    return sorted(p.name[: -len(".json")] for p in _bundled().iterdir() if p.name.endswith(".json"))


def load_profile(name_or_path) -> HyperProfile:
    """A bundled profile by name ("xlstm-large") or a profile JSON file by path."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"profile file {path} does not exist")
        return HyperProfile.from_json(path.read_text(), origin=str(path))
    entry = _bundled().joinpath(f"{name_or_path}.json")
    if not entry.is_file():
        raise ValueError(f"no bundled profile {name_or_path!r}; available: {list_profiles()}")
    profile = HyperProfile.from_json(entry.read_text(), origin=f"bundled profile {name_or_path}")
    if profile.name != name_or_path:
        raise ValueError(f"bundled profile file {name_or_path}.json names itself {profile.name!r}")
    return profile
