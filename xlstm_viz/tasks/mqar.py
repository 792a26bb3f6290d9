"""Multi-query associative recall (MQAR), the synthetic memory probe of Zoology and the xLSTM paper.

A sequence first lists key-value pairs, then asks for some of the keys again; after each queried key the
model must emit the value that key was paired with. Layout (P pairs, Q queries):

    K17 V4  K3 V9  K40 V4  ...  ? K3 V9  ? K17 V4  ...
    └──────── context ───────┘  └────── queries ──────┘

The `?` marks a query, so a causal model knows when the next token is recall rather than a fresh random
value. Recall is scored only at the queried key (the position whose next token is the value); every other
position is masked out of loss and accuracy. The value after the queried key is in the input too (teacher
forcing), which keeps the whole sequence readable in the dashboard: `? K3 -> V9`.

Keys within one sequence are distinct (a key has one value); values are drawn with replacement, so two
keys may share a value, as in the example above. Queried keys are distinct and in random order.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np

PAD = "<pad>"
QUERY = "?"
_SPECIALS = (PAD, QUERY)
# Tokens per query: "?", the key, its value.
_QUERY_LEN = 3


class MQARBatch(NamedTuple):
    """One batch of MQAR sequences (all numpy, [batch, seq_len]).

    input_ids: int32 token ids fed to the model.
    targets:   int32, at scored positions the value the model must predict next, elsewhere the pad id.
    loss_mask: bool, True exactly at the queried keys (where recall is scored).
    """

    input_ids: np.ndarray
    targets: np.ndarray
    loss_mask: np.ndarray


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


@dataclass(frozen=True)
class MQARTask:
    """Vocabulary and sequence layout of the recall task.

    Token ids: 0 = `<pad>`, 1 = `?`, then `num_keys` key tokens `K0..`, then `num_values` value tokens `V0..`.
    """

    num_keys: int = 64
    num_values: int = 64

    def __post_init__(self):
        _check_int("num_keys", self.num_keys, 1)
        _check_int("num_values", self.num_values, 1)

    # -- vocabulary -------------------------------------------------------------------------------------
    @property
    def pad_id(self) -> int:
        return 0

    @property
    def query_id(self) -> int:
        return 1

    @property
    def key_offset(self) -> int:
        return len(_SPECIALS)

    @property
    def value_offset(self) -> int:
        return self.key_offset + self.num_keys

    @property
    def vocab_size(self) -> int:
        return self.value_offset + self.num_values

    @property
    def labels(self) -> list[str]:
        """Readable label of every token id, index = id."""
        return (
            list(_SPECIALS)
            + [f"K{i}" for i in range(self.num_keys)]
            + [f"V{i}" for i in range(self.num_values)]
        )

    def key_ids(self) -> np.ndarray:
        return np.arange(self.key_offset, self.value_offset)

    def value_ids(self) -> np.ndarray:
        return np.arange(self.value_offset, self.vocab_size)

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Token ids (1-D) -> labels."""
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"decode expects a 1-D sequence of token ids, got shape {arr.shape}")
        labels = self.labels
        out = []
        for pos, tok in enumerate(arr.tolist()):
            if not isinstance(tok, int) or not 0 <= tok < len(labels):
                raise ValueError(
                    f"token id {tok!r} at position {pos} is outside the vocabulary [0, {len(labels)})"
                )
            out.append(labels[tok])
        return out

    def encode(self, labels: Iterable[str] | str) -> np.ndarray:
        """Labels (a list, or one space-separated string) -> int32 token ids."""
        if isinstance(labels, str):
            labels = labels.split()
        index = {label: i for i, label in enumerate(self.labels)}
        ids = []
        for pos, label in enumerate(labels):
            if label not in index:
                raise ValueError(
                    f"unknown token label {label!r} at position {pos}; expected {PAD!r}, {QUERY!r}, "
                    f"K0..K{self.num_keys - 1} or V0..V{self.num_values - 1}"
                )
            ids.append(index[label])
        return np.asarray(ids, dtype=np.int32)

    # -- sequences -------------------------------------------------------------------------------------
    def seq_len(self, num_pairs: int, num_queries: int) -> int:
        return 2 * num_pairs + _QUERY_LEN * num_queries

    def sample(
        self,
        rng: np.random.Generator,
        num_pairs: int,
        num_queries: int | None = None,
        batch_size: int = 1,
        pad_to_multiple: int = 1,
    ) -> MQARBatch:
        """Draw a batch of sequences with `num_pairs` pairs and `num_queries` queries (default: all keys).

        `pad_to_multiple` right-pads every sequence with `<pad>` (masked out) to a multiple of that length,
        e.g. the model's chunk size.
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        num_pairs = _check_int("num_pairs", num_pairs, 1)
        if num_pairs > self.num_keys:
            raise ValueError(
                f"num_pairs={num_pairs} exceeds num_keys={self.num_keys}: keys within a sequence are distinct"
            )
        num_queries = num_pairs if num_queries is None else num_queries
        num_queries = _check_int("num_queries", num_queries, 1)
        if num_queries > num_pairs:
            raise ValueError(
                f"num_queries={num_queries} exceeds num_pairs={num_pairs}: only keys in the context can be queried"
            )
        batch_size = _check_int("batch_size", batch_size, 1)
        pad_to_multiple = _check_int("pad_to_multiple", pad_to_multiple, 1)

        b = np.arange(batch_size)[:, None]
        # Distinct keys per row: the first num_pairs of a random permutation.
        keys = np.argsort(rng.random((batch_size, self.num_keys)), axis=1)[:, :num_pairs]
        values = rng.integers(0, self.num_values, size=(batch_size, num_pairs))
        # Which pairs to ask for, distinct and in random order.
        asked = np.argsort(rng.random((batch_size, num_pairs)), axis=1)[:, :num_queries]

        key_tok = keys + self.key_offset
        value_tok = values + self.value_offset
        ctx_len = 2 * num_pairs
        length = self.seq_len(num_pairs, num_queries)
        padded = -(-length // pad_to_multiple) * pad_to_multiple

        ids = np.full((batch_size, padded), self.pad_id, dtype=np.int32)
        ids[:, 0:ctx_len:2] = key_tok
        ids[:, 1:ctx_len:2] = value_tok
        q0 = ctx_len + _QUERY_LEN * np.arange(num_queries)  # position of each "?"
        ids[:, q0] = self.query_id
        ids[:, q0 + 1] = key_tok[b, asked]
        ids[:, q0 + 2] = value_tok[b, asked]

        targets = np.full_like(ids, self.pad_id)
        loss_mask = np.zeros(ids.shape, dtype=bool)
        targets[:, q0 + 1] = value_tok[b, asked]
        loss_mask[:, q0 + 1] = True
        return MQARBatch(ids, targets, loss_mask)

    def previous_key_targets(self, input_ids: np.ndarray, num_pairs: int) -> tuple[np.ndarray, np.ndarray]:
        """At each context value position, the key just before it: (targets, mask), both [batch, seq_len].

        The training scaffold `train(previous_key_weight=...)` scores these. A pair can only be bound in matrix
        memory once the key's identity has reached its value's position; the xLSTM-7B block has no causal
        convolution to carry it there, so this hint stands in for one while training.
        """
        ids = np.asarray(input_ids)
        if ids.ndim != 2:
            raise ValueError(f"input_ids must have shape [batch, seq_len], got {ids.shape}")
        num_pairs = _check_int("num_pairs", num_pairs, 1)
        if 2 * num_pairs > ids.shape[1]:
            raise ValueError(f"num_pairs={num_pairs} needs {2 * num_pairs} context tokens, "
                             f"the sequences have {ids.shape[1]}")
        targets = np.full_like(ids, self.pad_id)
        mask = np.zeros(ids.shape, dtype=bool)
        targets[:, 1:2 * num_pairs:2] = ids[:, 0:2 * num_pairs:2]
        mask[:, 1:2 * num_pairs:2] = True
        return targets, mask

    # -- persistence (task.json next to the checkpoint, so the dashboard can label tokens) ---------------
    def to_dict(self) -> dict:
        return {"task": "mqar", **asdict(self), "labels": self.labels}

    @classmethod
    def from_dict(cls, d: dict) -> "MQARTask":
        if d.get("task") != "mqar":
            raise ValueError(f"task description has task={d.get('task')!r}, expected 'mqar'")
        missing = [k for k in ("num_keys", "num_values") if k not in d]
        if missing:
            raise ValueError(f"task description lacks {missing}")
        task = cls(num_keys=d["num_keys"], num_values=d["num_values"])
        if "labels" in d and list(d["labels"]) != task.labels:
            raise ValueError("task description 'labels' disagree with num_keys/num_values")
        return task

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "MQARTask":
        return cls.from_dict(json.loads(Path(path).read_text()))


def recall_accuracy(logits_or_predictions, targets, loss_mask) -> float:
    """Fraction of scored positions where the model's top token is the target value.

    Accepts logits [B, S, V] (argmax taken) or predicted ids [B, S]; numpy or MLX arrays.
    """
    pred = np.asarray(logits_or_predictions)
    targets = np.asarray(targets)
    mask = np.asarray(loss_mask, dtype=bool)
    if pred.ndim == targets.ndim + 1:
        pred = pred.argmax(axis=-1)
    if pred.shape != targets.shape or mask.shape != targets.shape:
        raise ValueError(
            f"shape mismatch: predictions {pred.shape}, targets {targets.shape}, loss_mask {mask.shape}"
        )
    scored = int(mask.sum())
    if scored == 0:
        raise ValueError("loss_mask selects no position: nothing to score")
    return float((pred[mask] == targets[mask]).sum() / scored)
