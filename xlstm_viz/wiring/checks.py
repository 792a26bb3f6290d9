"""Argument checks whose errors name the parameter and the bad value."""

from __future__ import annotations

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
