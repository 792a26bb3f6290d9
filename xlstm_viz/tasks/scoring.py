"""The task score of a model as it is now (with its wiring edits and interventions) over N fresh MQAR sequences,
with a confidence interval, and the paired difference of two scores on the same sequences.

One example says little: the README's recall figures are over 512 sequences. The interval is the normal one over
per-sequence recall accuracies, mean +- z * sd / sqrt(N); two scores drawn with the same seed see the same
sequences, so their difference gets the tighter paired interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

MAX_SEQUENCES = 4096  # what one dashboard click may ask for (a bound, so a document cannot freeze the model thread)


@dataclass(frozen=True)
class Score:
    mean: float
    low: float
    high: float
    n: int
    num_pairs: int
    seed: int
    confidence: float
    per_sequence: np.ndarray  # [n] recall accuracy of each sequence

    def __str__(self) -> str:
        return (f"recall {self.mean:.3f} ({self.confidence:.0%} CI {self.low:.3f}-{self.high:.3f}; {self.n} sequences "
                f"of {self.num_pairs} pairs, seed {self.seed})")


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    half = z * float(values.std(ddof=1)) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def task_score(model, task=None, n: int = 512, num_pairs: int = 8, seed: int = 0, num_queries: int | None = None,
               batch_size: int = 128, confidence: float = 0.95) -> Score:
    """Recall accuracy of `model` on `n` fresh seeded MQAR sequences, per sequence, with a `confidence` interval.

    The sequences are drawn as `xlstm_viz.training.evaluate` draws them (same seed, same batches), so the mean
    equals its pooled accuracy whenever every sequence has the same number of queries.
    """
    import mlx.core as mx

    task = task if task is not None else getattr(model, "task", None)
    if task is None:
        raise ValueError("the model has no MQAR task attached (model.task); pass task=MQARTask(...)")
    for name, value, low, high in (("n", n, 1, MAX_SEQUENCES), ("num_pairs", num_pairs, 1, task.num_keys),
                                   ("batch_size", batch_size, 1, None)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (
                high is not None and value > high):
            raise ValueError(f"{name} must be an integer in [{low}, {high if high is not None else 'inf'}], "
                             f"got {value!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    rng = np.random.default_rng(seed)
    chunk = int(getattr(model.config, "chunk_size", 1))
    scores, left = [], n
    while left > 0:
        size = min(batch_size, left)
        ids, targets, mask = task.sample(rng, num_pairs, num_queries, batch_size=size, pad_to_multiple=chunk)
        logits, _ = model(mx.array(ids), mode="chunkwise")
        pred = np.array(mx.argmax(logits, axis=-1))
        hits = ((pred == targets) & mask).sum(1)
        scores.append(hits / np.maximum(mask.sum(1), 1))
        left -= size
    per = np.concatenate(scores).astype(np.float64)
    mean, low, high = _interval(per, confidence)
    return Score(mean, low, high, n, int(num_pairs), int(seed), confidence, per)


def score_difference(before: Score, after: Score) -> tuple[float, float, float]:
    """(mean, low, high) of after - before, paired over the same sequences (same n, pairs and seed)."""
    if (before.n, before.num_pairs, before.seed) != (after.n, after.num_pairs, after.seed):
        raise ValueError(f"a paired difference needs the same sequences: before has n={before.n}, pairs="
                         f"{before.num_pairs}, seed={before.seed}; after has n={after.n}, pairs={after.num_pairs}, "
                         f"seed={after.seed}")
    return _interval(after.per_sequence - before.per_sequence, after.confidence)
