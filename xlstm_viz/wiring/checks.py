"""Argument checks whose errors name the parameter and the bad value."""

from __future__ import annotations

import math
import operator


def count(name: str, value, minimum: int = 0, maximum: int | None = None) -> int:
    """`value` as a Python int in [minimum, maximum]; bools and floats are refused (they hide mistakes)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})") from None
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {number}")
    return number


def polarity(name: str, value, allow_zero: bool) -> int:
    """+1 / -1 (or 0 when clearing is allowed) as an int; 1.0 is accepted like ncps does."""
    allowed = (-1, 0, 1) if allow_zero else (-1, 1)
    if isinstance(value, bool) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return int(value)


# Documented size bounds, checked before anything is allocated: a neuron wiring holds dense int32 matrices
# (units x units and input_dim x units), so 4096 neurons are 64 MiB, and a JSON file of a few bytes could
# otherwise ask for gigabytes.
MAX_UNITS = 4096
MAX_INPUTS = 4096


def number(name: str, value, minimum: float | None = None, maximum: float | None = None,
           below: float | None = None) -> float:
    """`value` as a finite float in [minimum, maximum] (or < below); strings and bools are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r} ({type(value).__name__})")
    number = float(value)
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
    if below is not None and number >= below:
        raise ValueError(f"{name} must be < {below}, got {value!r}")
    return number


def flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be true or false, got {value!r} ({type(value).__name__})")
    return value
