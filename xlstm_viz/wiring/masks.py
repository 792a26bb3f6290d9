"""Seeded element masks: the NCPS idea of sparsity (the mask multiplies the weights) for any weight shape."""

from __future__ import annotations

import zlib

import numpy as np


def zero_count(sparsity: float, size: int) -> int:
    """How many of `size` elements a mask of this sparsity zeroes: round-half-even, like ncps's Random."""
    return int(np.round(sparsity * size))


def element_mask(seed: int, shape: tuple[int, ...], sparsity: float) -> np.ndarray:
    """float32 mask of `shape` with exactly `zero_count(sparsity, size)` zeros, a pure function of
    (seed, shape, sparsity). The zeroed positions are the first k of a seeded shuffle of all positions,
    so a higher sparsity with the same seed zeroes a superset of the positions."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise ValueError(f"mask shape must be non-negative, got {shape}")
    size = int(np.prod(shape, dtype=np.int64))
    mask = np.ones(size, dtype=np.float32)
    k = zero_count(sparsity, size)
    if k:
        order = np.arange(size, dtype=np.int32 if size < 2**31 else np.int64)
        np.random.default_rng(seed).shuffle(order)
        mask[order[:k]] = 0.0
    return mask.reshape(shape)


def name_seed(base_seed: int, name: str) -> int:
    """A per-name seed, stable across processes (crc32, not Python's salted hash), so that equal
    shapes in different places get different masks from one user-facing seed."""
    return (int(base_seed) * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % 2**32
