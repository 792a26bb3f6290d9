"""Float32 comparisons whose tolerance scales with the magnitude compared (ULPs of the largest reference value).

A fixed absolute tolerance on a float32 state is a statement about one host: the stabiliser m of the fixtures is
about 15, so float32 rounding alone moves it by ~1e-6 per operation, and a different BLAS (OpenBLAS vs MLX's reference
BLAS) sums in another order. The tolerances below are counted in float32 ULPs of the largest |reference| entry of the
compared tensor, so the same test means the same thing at every scale and on every CPU.

Measured worst cases (tiny, small and d96 fixtures; OpenBLAS and XLSTM_VIZ_BLAS=off on an AMD EPYC, ULPs of the
largest entry): official parity C 23, n 28, m 25; our chunkwise vs our recurrent on ragged lengths C 69, n 87, m 67.
"""

from __future__ import annotations

import numpy as np

F32_ULP = float(np.finfo(np.float32).eps)  # 2**-23: one ULP at magnitude 1
# mLSTM final states C, n, m: about 10x (C, n) and 6x (m) above the worst case measured above.
STATE_ULPS = {"C": 800, "n": 800, "m": 400}


def scaled_error(got, want) -> tuple[float, float]:
    """(max |got - want|, max |want|), in float64."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    return float(np.max(np.abs(got - want), initial=0.0)), float(np.max(np.abs(want), initial=0.0))


def assert_close_to_scale(got, want, ulps: float, what: str = "") -> None:
    """max |got - want| <= ulps * F32_ULP * max |want| (a reference of zeros must be matched exactly)."""
    err, scale = scaled_error(got, want)
    allowed = ulps * F32_ULP * scale
    assert err <= allowed, (
        f"{what}: max abs error {err:.3g} is {err / (F32_ULP * scale) if scale else float('inf'):.0f} ULPs of the "
        f"largest value {scale:.3g}; allowed {ulps} ULPs ({allowed:.3g})"
    )


def assert_states_close(state, ref, key: str | None = None, ulps: dict = STATE_ULPS) -> None:
    """Final mLSTM states against a reference: `ref` is a list of states, or a fixture npz read with `key`
    (entries `{key}/block{b}/{C,n,m}`)."""
    for b, entry in enumerate(state):
        for name in ("C", "n", "m"):
            want = getattr(ref[b], name) if key is None else ref[f"{key}/block{b}/{name}"]
            assert_close_to_scale(getattr(entry, name), want, ulps[name], f"{key or 'state'} block {b} {name}")
