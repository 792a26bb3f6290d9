"""HyperProfiles: named, validated bundles of initialisation, constraint and solver settings.

A profile is JSON (bundled ones live in `xlstm_viz/wiring/profiles/*.json`) with the fields of
`HyperProfile`. `initializers` maps a parameter kind (see `parameter_kind`) to a distribution:

    {"dist": "constant", "value": v}
    {"dist": "normal", "std": s, "mean": m (default 0), "scale": "fan_in" (optional: std / sqrt(shape[-1]))}
    {"dist": "uniform", "low": a, "high": b}
    {"dist": "linspace", "low": a, "high": b}   # evenly spaced along the last axis, e.g. fgate bias over heads

`constraints` maps a quantity to an allowed range {"min": a, "max": b} (either may be left out);
`solver` holds training settings; `extras` anything else worth keeping with the profile.
A model initialised from scratch calls `profile.init_parameter(name, shape, rng)` per parameter.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

_DISTRIBUTIONS = {
    "constant": ({"value"}, set()),
    "normal": ({"std"}, {"mean", "scale"}),
    "uniform": ({"low", "high"}, set()),
    "linspace": ({"low", "high"}, set()),
}
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


def _freeze(value):
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value):
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class HyperProfile:
    name: str
    description: str
    source_backend: str
    target_backend: str
    initializers: Mapping[str, Mapping[str, Any]]
    constraints: Mapping[str, Mapping[str, float]]
    solver: Mapping[str, Any]
    extras: Mapping[str, Any]

    def __post_init__(self):
        for field_name in ("name", "description", "source_backend", "target_backend"):
            value = getattr(self, field_name)
            if not isinstance(value, str) or (field_name == "name" and not value):
                raise ValueError(f"profile field {field_name!r} must be a non-empty string, got {value!r}")
        for field_name in ("initializers", "constraints", "solver", "extras"):
            value = getattr(self, field_name)
            if not isinstance(value, Mapping):
                raise ValueError(f"profile {self.name!r}: field {field_name!r} must be an object, got {type(value).__name__}")
            object.__setattr__(self, field_name, _freeze(value))
        for kind, spec in self.initializers.items():
            _check_distribution(self.name, kind, spec)
        for quantity, bounds in self.constraints.items():
            _check_range(self.name, quantity, bounds)

    # -- JSON ------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping, origin: str = "profile") -> "HyperProfile":
        if not isinstance(data, Mapping):
            raise ValueError(f"{origin}: a profile must be a JSON object, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        missing = [n for n in names if n not in data and n not in ("constraints", "solver", "extras")]
        if unknown:
            raise ValueError(f"{origin}: unknown profile field(s) {unknown}; expected {names}")
        if missing:
            raise ValueError(f"{origin}: missing profile field(s) {missing}")
        defaults = {"constraints": {}, "solver": {}, "extras": {}}
        return cls(**{**defaults, **data})

    @classmethod
    def from_json(cls, text: str, origin: str = "profile") -> "HyperProfile":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{origin}: not valid JSON: {err}") from None
        return cls.from_dict(data, origin)

    def to_dict(self) -> dict:
        return {f.name: _thaw(getattr(self, f.name)) for f in fields(self)}

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    # -- initialisation --------------------------------------------------------------------------
    def init_array(self, kind: str, shape, rng: np.random.Generator) -> np.ndarray:
        """float32 array of `shape` drawn from the `kind` initializer with `rng`."""
        if kind not in self.initializers:
            raise KeyError(f"profile {self.name!r} has no initializer for {kind!r}; it has {sorted(self.initializers)}")
        spec = self.initializers[kind]
        shape = tuple(int(d) for d in shape)
        dist = spec["dist"]
        if dist == "constant":
            values = np.full(shape, spec["value"])
        elif dist == "normal":
            std = spec["std"]
            if spec.get("scale") == "fan_in":
                if not shape:
                    raise ValueError(f"{kind}: fan_in scaling needs at least one dimension, got shape {shape}")
                std = std / math.sqrt(shape[-1])
            values = rng.normal(spec.get("mean", 0.0), std, size=shape)
        elif dist == "uniform":
            values = rng.uniform(spec["low"], spec["high"], size=shape)
        else:  # linspace
            if not shape:
                raise ValueError(f"{kind}: linspace needs at least one dimension, got shape {shape}")
            values = np.broadcast_to(np.linspace(spec["low"], spec["high"], shape[-1]), shape)
        return np.ascontiguousarray(values, dtype=np.float32)

    def init_parameter(self, name: str, shape, rng: np.random.Generator) -> np.ndarray:
        """`init_array` for a checkpoint parameter name (kind from `parameter_kind`)."""
        kind = parameter_kind(name)
        if kind not in self.initializers and kind in _FALLBACK_KIND:
            kind = _FALLBACK_KIND[kind]
        return self.init_array(kind, shape, rng)


def _check_distribution(profile: str, kind: str, spec) -> None:
    where = f"profile {profile!r}: initializer {kind!r}"
    if not isinstance(spec, Mapping) or "dist" not in spec:
        raise ValueError(f"{where} must be an object with a 'dist' field, got {_thaw(spec)!r}")
    dist = spec["dist"]
    if dist not in _DISTRIBUTIONS:
        raise ValueError(f"{where}: unknown dist {dist!r}; expected one of {sorted(_DISTRIBUTIONS)}")
    required, optional = _DISTRIBUTIONS[dist]
    given = set(spec) - {"dist"}
    if required - given:
        raise ValueError(f"{where}: dist {dist!r} needs {sorted(required - given)}")
    if given - required - optional:
        raise ValueError(f"{where}: unknown field(s) {sorted(given - required - optional)} for dist {dist!r}")
    for key in given - {"scale"}:
        if not _is_number(spec[key]):
            raise ValueError(f"{where}: {key} must be a finite number, got {spec[key]!r}")
    if dist == "normal" and spec["std"] < 0:
        raise ValueError(f"{where}: std must be >= 0, got {spec['std']!r}")
    if "scale" in spec and spec["scale"] != "fan_in":
        raise ValueError(f"{where}: scale must be 'fan_in', got {spec['scale']!r}")
    if dist == "uniform" and spec["low"] > spec["high"]:
        raise ValueError(f"{where}: low {spec['low']!r} is above high {spec['high']!r}")


def _check_range(profile: str, quantity: str, bounds) -> None:
    where = f"profile {profile!r}: constraint {quantity!r}"
    if not isinstance(bounds, Mapping) or not bounds or set(bounds) - {"min", "max"}:
        raise ValueError(f"{where} must be an object with 'min' and/or 'max', got {_thaw(bounds)!r}")
    for key, value in bounds.items():
        if not _is_number(value):
            raise ValueError(f"{where}: {key} must be a finite number, got {value!r}")
    if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
        raise ValueError(f"{where}: min {bounds['min']!r} is above max {bounds['max']!r}")


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
