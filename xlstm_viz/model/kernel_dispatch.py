"""What the kernel modules (mlstm_kernels, gemv_kernels) share: the mode a caller asks for (an argument, else an
environment variable) and the self-check a kernel passes once per process before it is used."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping

MODES = ("auto", "kernel", "mlx")  # auto: the kernel where its backend exists and its self-check passed


def resolve_mode(env: str, default: str, mode: str | None = None) -> str:
    """The argument, else $`env`, else `default`; anything else is refused by the name it came from."""
    chosen = mode if mode is not None else os.environ.get(env, default)
    if chosen not in MODES:
        raise ValueError(f"{'mode' if mode is not None else env} = {chosen!r}; expected one of {MODES}")
    return chosen


def checked_once(cache: dict, key: str, measure: Callable[[], Mapping[str, float]],
                 tolerance: float | Mapping[str, float], kernel: str, reference: str, fallback: str) -> bool:
    """Whether `kernel` agrees with `reference` on a small random input, measured once per process and `key`.

    `measure()` returns relative errors by name, each compared with `tolerance` (one number, or one per name). A
    kernel that disagrees, or raises (does not compile or launch), warns once, naming its errors or its exception,
    and the caller uses `fallback` for the rest of the process."""
    if key not in cache:
        try:
            errors = dict(measure())
            limits = {name: tolerance[name] if isinstance(tolerance, Mapping) else tolerance for name in errors}
            ok = all(errors[name] <= limits[name] for name in errors)
            why = f"relative errors {errors} exceed {tolerance}"
        except Exception as error:  # noqa: BLE001 - a kernel that does not compile or launch falls back too
            ok, why = False, f"it failed: {type(error).__name__}: {error}"
        if not ok:
            warnings.warn(f"{kernel} did not match {reference}: {why}; using {fallback} in this process",
                          RuntimeWarning, stacklevel=4)
        cache[key] = ok
    return cache[key]
