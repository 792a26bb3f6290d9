"""Activation patching, as TransformerLens users do it: a clean and a corrupted prompt of the same length, one
cell's output (or some of its heads, or some positions) copied from one run into the other, and per position the
logit difference and the KL divergence that the copy leaves.

    p = Patcher(model, clean_ids, corrupted_ids)
    r = p.patch("blocks.1.mlstm.memory", heads=[2], positions=[17])   # clean -> corrupted ("denoise")
    r.logit_diff["patched"], r.kl["patched"], r.recovered

Metric per position t (a_t: the answer, b_t: the wrong answer; by default the top token of the clean run and of
the corrupted run at t):
    logit difference  LD_t = logit_t[a_t] - logit_t[b_t]                   (for the clean, corrupted, patched run)
    recovered_t = (LD_t(patched) - LD_t(corrupted)) / (LD_t(clean) - LD_t(corrupted))  (NaN where they tie)
    KL_t = KL(p_clean,t || p_run,t) in nats                               (for the corrupted and the patched run)
"denoise" patches the clean activation into the corrupted run (recovered -> 1 means the cell carries what the
corruption removed); "noise" patches the corrupted activation into the clean run (recovered -> 0 means the cell
is necessary). Interventions already on the model (ablations) stay on for all three runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mlx.core as mx
import numpy as np

from xlstm_viz.execution.probes import select_probes

DIRECTIONS = ("denoise", "noise")


def _ids(name: str, ids) -> np.ndarray:
    a = np.asarray(ids)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] != 1:
        raise ValueError(f"{name} must be one sequence of token ids, shape [S] or [1, S], got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integer token ids, got dtype {a.dtype}")
    return a.astype(np.int32)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def kl_per_position(reference_logits: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """KL(p_ref || p) per position, nats: [S, V] logits (or [1, S, V]) -> [S]."""
    ref, lp = _log_softmax(np.squeeze(reference_logits, 0) if reference_logits.ndim == 3 else reference_logits), \
        _log_softmax(np.squeeze(logits, 0) if logits.ndim == 3 else logits)
    return (np.exp(ref) * (ref - lp)).sum(-1)


def logit_difference(logits: np.ndarray, answer: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """logit[t, answer_t] - logit[t, wrong_t] per position: [S, V] (or [1, S, V]) -> [S]."""
    x = np.squeeze(logits, 0) if logits.ndim == 3 else logits
    t = np.arange(x.shape[0])
    return x[t, answer].astype(np.float64) - x[t, wrong].astype(np.float64)


@dataclass
class PatchResult:
    """What one patch did, per position. Arrays are [S]; `logits` holds the three runs' [S, V] logits."""

    probe: str
    heads: tuple[int, ...] | None
    positions: tuple[int, ...] | None
    direction: str
    answer: np.ndarray
    wrong: np.ndarray
    logit_diff: dict[str, np.ndarray]  # "clean", "corrupted", "patched"
    kl: dict[str, np.ndarray]  # "corrupted", "patched": KL(p_clean || p_run)
    logits: dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    @property
    def recovered(self) -> np.ndarray:
        gap = self.logit_diff["clean"] - self.logit_diff["corrupted"]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = (self.logit_diff["patched"] - self.logit_diff["corrupted"]) / gap
        return np.where(np.abs(gap) > 1e-9 * (1 + np.abs(self.logit_diff["clean"])), out, np.nan)

    def describe(self) -> str:
        what = self.probe + ("" if self.heads is None else f" heads {list(self.heads)}")
        what += "" if self.positions is None else f" at positions {list(self.positions)}"
        src, dst = ("clean", "corrupted") if self.direction == "denoise" else ("corrupted", "clean")
        return f"patched {what} from the {src} run into the {dst} run"

    def table(self, decode=None, clean_ids=None, corrupted_ids=None) -> dict[str, np.ndarray]:
        """One row per position (the CSV export and the dashboard table)."""
        S = len(self.answer)
        label = (lambda i: decode(int(i))) if decode is not None else (lambda i: str(int(i)))
        cols = {"position": np.arange(S)}
        if clean_ids is not None:
            cols["clean_token"] = np.array([label(i) for i in np.ravel(clean_ids)], dtype=object)
        if corrupted_ids is not None:
            cols["corrupted_token"] = np.array([label(i) for i in np.ravel(corrupted_ids)], dtype=object)
        cols["answer"] = np.array([label(i) for i in self.answer], dtype=object)
        cols["wrong"] = np.array([label(i) for i in self.wrong], dtype=object)
        for k in ("clean", "corrupted", "patched"):
            cols[f"logit_diff_{k}"] = self.logit_diff[k]
        cols["recovered"] = self.recovered
        cols["kl_corrupted"] = self.kl["corrupted"]
        cols["kl_patched"] = self.kl["patched"]
        return cols


@dataclass
class SweepResult:
    """`values[r, c]`: the metric of patching row probe r at column c (a position or a head)."""

    probes: list[str]
    over: str  # "position" or "head"
    columns: list[int]
    at: int  # the position the metric is read at
    metric: str
    values: np.ndarray


class Patcher:
    """Clean and corrupted runs of one model, kept so that many patches cost one forward each (plus one full-mode
    forward of the source run per probe)."""

    def __init__(self, model, clean_ids, corrupted_ids, answer=None, wrong=None, run_mode: str = "chunkwise"):
        self.model = model
        self.clean_ids = _ids("clean_ids", clean_ids)
        self.corrupted_ids = _ids("corrupted_ids", corrupted_ids)
        if self.clean_ids.shape != self.corrupted_ids.shape:
            raise ValueError(f"the clean and corrupted prompts must have the same length to patch position by "
                             f"position: clean {self.clean_ids.shape[1]} tokens, corrupted "
                             f"{self.corrupted_ids.shape[1]} tokens")
        self.run_mode = run_mode
        self.seq_len = int(self.clean_ids.shape[1])
        self.logits = {"clean": self._logits(self.clean_ids), "corrupted": self._logits(self.corrupted_ids)}
        V = self.logits["clean"].shape[-1]
        self.answer = self._answer("answer", answer, self.logits["clean"], V)
        self.wrong = self._answer("wrong", wrong, self.logits["corrupted"], V)
        self._full: dict[tuple[str, str], object] = {}  # (run, probe) -> Trace with that probe's full tensor

    def _logits(self, ids) -> np.ndarray:
        logits, _ = self.model(mx.array(ids), mode=self.run_mode)
        return np.array(logits.astype(mx.float32))[0]

    def _answer(self, name, value, logits, V) -> np.ndarray:
        if value is None:
            return logits.argmax(-1).astype(np.int64)
        a = np.broadcast_to(np.asarray(value), (self.seq_len,)) if np.ndim(value) == 0 else np.asarray(value)
        if a.shape != (self.seq_len,) or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must be one token id or {self.seq_len} token ids (one per position), got "
                             f"{np.asarray(value).shape} of dtype {np.asarray(value).dtype}")
        bad = np.flatnonzero((a < 0) | (a >= V))
        if len(bad):
            raise ValueError(f"{name}[{bad[0]}] = {int(a[bad[0]])} is outside the vocabulary [0, {V})")
        return a.astype(np.int64)

    def check_positions(self, positions) -> tuple[int, ...] | None:
        if positions is None:
            return None
        raw = np.atleast_1d(np.asarray(positions, dtype=object)).ravel().tolist()
        bad = [p for p in raw if isinstance(p, bool) or not isinstance(p, (int, np.integer))
               or not 0 <= p < self.seq_len]
        if bad or not raw:
            raise ValueError(f"position {bad[0] if bad else positions!r} is outside the prompt: positions are "
                             f"0..{self.seq_len - 1}")
        return tuple(sorted({int(p) for p in raw}))

    def _source(self, run: str, probe: str):
        key = (run, probe)
        if key not in self._full:
            ids = self.clean_ids if run == "clean" else self.corrupted_ids
            # eager: one run per (prompt, probe), so a compiled graph would be traced for one use
            self._full[key] = self.model.run_with_trace(mx.array(ids), probes=[probe], mode="full",
                                                        run_mode=self.run_mode, compiled=False)
        return self._full[key]

    def patched_logits(self, probe: str, heads=None, positions=None, direction: str = "denoise") -> np.ndarray:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        names = select_probes(self.model, probe)
        positions = self.check_positions(positions)
        src, dst = ("clean", self.corrupted_ids) if direction == "denoise" else ("corrupted", self.clean_ids)
        added = []
        try:
            for name in names:
                added.append(self.model.interventions.add(name, "patch", source_trace=self._source(src, name),
                                                          tokens=positions, heads=heads))
            return self._logits(dst)
        finally:
            for item in added:
                self.model.interventions.remove(item)

    def patch(self, probe: str, heads=None, positions=None, direction: str = "denoise") -> PatchResult:
        """Copy `probe`'s output (optionally only `heads`, only at `positions`) from one run into the other."""
        patched = self.patched_logits(probe, heads, positions, direction)
        logits = dict(self.logits, patched=patched)
        ld = {k: logit_difference(v, self.answer, self.wrong) for k, v in logits.items()}
        kl = {k: kl_per_position(self.logits["clean"], logits[k]) for k in ("corrupted", "patched")}
        heads = None if heads is None else tuple(sorted({int(h) for h in np.atleast_1d(heads)}))
        return PatchResult(probe, heads, self.check_positions(positions), direction, self.answer, self.wrong,
                           ld, kl, logits)

    def most_affected_position(self) -> int:
        """Where the corruption moved the logit difference most (the default read-out of a sweep)."""
        gap = np.abs(logit_difference(self.logits["clean"], self.answer, self.wrong)
                     - logit_difference(self.logits["corrupted"], self.answer, self.wrong))
        return int(np.argmax(gap))

    def sweep(self, probes, over: str = "position", at: int | None = None, direction: str = "denoise",
              metric: str = "recovered") -> SweepResult:
        """Patch each probe at each position (or each head) alone and read `metric` at position `at`."""
        if over not in ("position", "head"):
            raise ValueError(f"a sweep goes over 'position' or 'head', got {over!r}")
        if metric not in ("recovered", "logit_diff", "kl"):
            raise ValueError(f"metric must be 'recovered', 'logit_diff' or 'kl', got {metric!r}")
        at = self.most_affected_position() if at is None else self.check_positions([at])[0]
        names = select_probes(self.model, probes)
        heads = {}  # over heads: each probe's own block's head count (an sLSTM block may have fewer)
        if over == "head":
            heads = {name: self.model.cell_heads(name) for name in names}
            flat = [name for name, count in heads.items() if count is None]
            if flat:
                raise ValueError(f"cannot sweep over heads: {flat[0]!r} has no heads (sweep it over 'position')")
        columns = list(range(self.seq_len if over == "position" else max(heads.values(), default=0)))
        values = np.full((len(names), len(columns)), np.nan)
        for r, name in enumerate(names):
            for c in columns:
                kw = {"positions": [c]} if over == "position" else {"heads": [c]}
                if over == "position" and c > at:
                    continue  # a causal model: a position after `at` cannot change it
                if over == "head" and c >= heads[name]:
                    continue  # NaN: this probe's block has fewer heads
                res = self.patch(name, direction=direction, **kw)
                values[r, c] = {"recovered": res.recovered, "logit_diff": res.logit_diff["patched"],
                                "kl": res.kl["patched"]}[metric][at]
        return SweepResult(names, over, columns, at, metric, values)


def corrupt_mqar(task, input_ids, loss_mask, query: int = 0, rng=None):
    """A corrupted MQAR prompt: the value paired with the key of the `query`-th scored query is replaced by another
    value, in the context and after the query. Returns (corrupted ids [S], position of that queried key)."""
    ids = np.array(np.ravel(input_ids), dtype=np.int32)
    scored = np.flatnonzero(np.ravel(loss_mask))
    if not 0 <= query < len(scored):
        raise ValueError(f"query {query} does not exist: this prompt has {len(scored)} scored queries "
                         f"(0..{len(scored) - 1})")
    pos = int(scored[query])
    key, value = ids[pos], ids[pos + 1]
    rng = np.random.default_rng(0) if rng is None else rng
    choices = [v for v in task.value_ids() if v != value]
    new = int(rng.choice(choices))
    where = np.flatnonzero(ids == key)
    for k in where:
        if k + 1 < len(ids) and ids[k + 1] == value:
            ids[k + 1] = new
    return ids, pos
