"""Train an xLSTM on a synthetic recall task with MLX, through the very forward the app runs.

`train(...)` builds `XLSTM(config)`, draws seeded MQAR batches from a pair-count curriculum, and optimises the
masked cross-entropy at the queried keys with AdamW (linear warm-up, cosine decay, global-norm clipping).
An optional scaffold, `previous_key_weight`, adds the cross-entropy of predicting, at each context value, the
key just before it (see `MQARTask.previous_key_targets`): without it the 7B block, which has no causal conv,
sat on a "bag of values" plateau (~20% recall) in every run we made.
The step is `mx.compile`d when possible; it differentiates the executor's chunkwise forward, the same code the
dashboard and `load_model` use (without the token-range check, which reads values). Outputs in `out_dir`:

    config.json, model.safetensors   via model.save(out_dir)
    task.json                        vocabulary + token labels (the dashboard labels tokens with it)
    training_log.csv                 step, loss, accuracy, lr, elapsed_s, num_pairs (the loss curve)
    training.json                    every hyperparameter, the final evaluation and the wall time
"""

from __future__ import annotations

import csv
import json
import math
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from xlstm_viz.tasks import MQARTask, recall_accuracy

LOG_NAME = "training_log.csv"
SUMMARY_NAME = "training.json"
TASK_NAME = "task.json"
# loss = the recall loss at the queried keys (the scaffold's loss is logged on its own).
LOG_FIELDS = ("step", "loss", "accuracy", "lr", "elapsed_s", "num_pairs", "previous_key_loss")


def _mlx():
    # The fast BLAS must be loaded before MLX on Linux; absent (older trees) is fine.
    try:
        import xlstm_viz.blas  # noqa: F401
    except ImportError:
        pass
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim

    return mx, nn, optim


@dataclass(frozen=True)
class Curriculum:
    """Which number of key-value pairs each training batch gets.

    Each batch draws its pair count from `pair_counts` with probabilities `weights`. During the first
    `ramp_steps` steps only counts up to a limit that grows linearly from the smallest to the largest count
    are allowed (the weights are renormalised over those), so early steps see short, easy sequences.
    """

    pair_counts: tuple[int, ...] = (4, 8, 12, 16)
    weights: tuple[float, ...] = (0.2, 0.4, 0.2, 0.2)
    ramp_steps: int = 0
    # Fraction of the pairs that are queried (at least one). Below 1 the last queries cannot be answered by
    # elimination ("the one value not asked for yet"), a shortcut that otherwise stalls learning real recall.
    query_fraction: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "pair_counts", tuple(int(p) for p in self.pair_counts))
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        if not self.pair_counts:
            raise ValueError("curriculum pair_counts is empty")
        if len(self.weights) != len(self.pair_counts):
            raise ValueError(
                f"curriculum weights has {len(self.weights)} entries but pair_counts has {len(self.pair_counts)}"
            )
        if any(p < 1 for p in self.pair_counts):
            raise ValueError(f"curriculum pair_counts must be >= 1, got {self.pair_counts}")
        if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise ValueError(f"curriculum weights must be >= 0 with a positive sum, got {self.weights}")
        if not 0 < self.query_fraction <= 1:
            raise ValueError(f"curriculum query_fraction must be in (0, 1], got {self.query_fraction}")
        if self.ramp_steps < 0:
            raise ValueError(f"curriculum ramp_steps must be >= 0, got {self.ramp_steps}")

    def num_queries(self, num_pairs: int) -> int:
        return max(1, int(round(num_pairs * self.query_fraction)))

    @property
    def most_frequent(self) -> int:
        """The pair count seen most often once the ramp is over."""
        return self.pair_counts[int(np.argmax(self.weights))]

    def num_pairs(self, step: int, rng: np.random.Generator) -> int:
        counts = np.asarray(self.pair_counts)
        weights = np.asarray(self.weights)
        if step < self.ramp_steps:
            lo, hi = counts.min(), counts.max()
            limit = lo + (hi - lo) * step / self.ramp_steps
            allowed = counts <= limit
            weights = np.where(allowed, weights, 0.0)
            if weights.sum() == 0:  # only the smallest count has zero weight: still start small
                weights = (counts == lo).astype(float)
        return int(rng.choice(counts, p=weights / weights.sum()))


@dataclass
class TrainResult:
    model: object
    out_dir: Path | None
    log: list[dict] = field(default_factory=list)
    final_eval: dict = field(default_factory=dict)
    elapsed_s: float = 0.0


def masked_cross_entropy(logits, targets, loss_mask):
    """Mean next-token cross-entropy over the scored (queried-key) positions only."""
    mx, nn, _ = _mlx()
    ce = nn.losses.cross_entropy(logits, targets, reduction="none")
    mask = loss_mask.astype(ce.dtype)
    return (ce * mask).sum() / mx.maximum(mask.sum(), 1.0)


def evaluate(model, task: MQARTask, num_pairs: int, num_samples: int = 512, seed: int = 0,
             num_queries: int | None = None, batch_size: int = 128) -> float:
    """Recall accuracy of `model` on `num_samples` fresh seeded MQAR sequences (eager forward, as the app)."""
    mx, _, _ = _mlx()
    rng = np.random.default_rng(seed)
    chunk = int(getattr(model.config, "chunk_size", 1))
    correct = scored = 0
    left = num_samples
    while left > 0:
        n = min(batch_size, left)
        ids, targets, mask = task.sample(rng, num_pairs, num_queries, batch_size=n, pad_to_multiple=chunk)
        logits, _ = model(mx.array(ids), mode="chunkwise")
        pred = np.array(mx.argmax(logits, axis=-1))
        correct += int((pred[mask] == targets[mask]).sum())
        scored += int(mask.sum())
        left -= n
    return correct / scored


def _forward_compiles(model, task: MQARTask, chunk: int) -> bool:
    """Whether `mx.compile` can trace the model's forward (it cannot if the forward reads array values).

    Probed on a throwaway function of the ids only, so a failed trace leaves the model and optimizer untouched.
    """
    mx, _, _ = _mlx()
    ids = mx.array(task.sample(np.random.default_rng(0), 1, pad_to_multiple=chunk).input_ids)
    try:
        mx.eval(mx.compile(lambda x: _forward(model, x))(ids))
    except ValueError as err:
        warnings.warn(f"training step runs eagerly: mx.compile cannot trace the model's forward ({err})",
                      stacklevel=3)
        return False
    return True


def _forward(model, ids):
    # The training batches come from the task's own vocabulary, so the token-range check (which reads values
    # and would stop mx.compile) is skipped; it is the same executor the app runs.
    from xlstm_viz.execution.executor import Executor

    return Executor(model).forward(ids, mode="chunkwise", check=False)[0]


def _lr_schedule(optim, lr: float, steps: int, warmup_steps: int, min_lr_ratio: float):
    warmup_steps = min(warmup_steps, max(steps - 1, 0))
    cosine = optim.cosine_decay(lr, max(steps - warmup_steps, 1), end=lr * min_lr_ratio)
    if warmup_steps == 0:
        return cosine
    warmup = optim.linear_schedule(lr / warmup_steps, lr, warmup_steps)
    return optim.join_schedules([warmup, cosine], [warmup_steps])


def train(
    config,
    task: MQARTask,
    steps: int,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    curriculum: Curriculum | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.95),
    warmup_steps: int | None = None,
    min_lr_ratio: float = 0.05,
    clip_norm: float = 1.0,
    log_every: int = 10,
    eval_pairs: tuple[int, ...] = (),
    eval_samples: int = 512,
    compile: bool = True,
    init=None,
    previous_key_weight: float = 0.0,
    previous_key_steps: int | None = None,
) -> TrainResult:
    """Train a fresh `XLSTM(config)` on `task`; see the module docstring for what lands in `out_dir`.

    config: an `XLSTMConfig` or a dict for `XLSTMConfig.from_dict`; its vocab_size must cover the task.
    eval_pairs: pair counts evaluated on fresh data (seed + 1000) after training, stored in training.json.
    compile: compile the training step with mx.compile when the forward allows it (else eager, with a warning).
    init: optional HyperProfile (or its name) for `XLSTM(config, init_profile=init, seed=seed)`.
    previous_key_weight: weight of the previous-key scaffold loss (0 = off); previous_key_steps: stop it after
        that many steps (None = all steps).
    """
    mx, nn, optim = _mlx()
    from xlstm_viz.config import XLSTMConfig
    from xlstm_viz.model import XLSTM

    if isinstance(config, dict):
        config = XLSTMConfig.from_dict(config)
    if config.vocab_size < task.vocab_size:
        raise ValueError(
            f"config.vocab_size={config.vocab_size} is smaller than the task vocabulary ({task.vocab_size} tokens)"
        )
    if not math.isfinite(previous_key_weight) or previous_key_weight < 0:
        raise ValueError(f"previous_key_weight must be a finite number >= 0, got {previous_key_weight}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if not 0 <= seed < 2**64:  # mx.random.seed takes an unsigned 64-bit integer
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed}")
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ValueError(f"out_dir {str(out_dir)!r} exists and is not a folder")
    curriculum = curriculum or Curriculum()
    if max(curriculum.pair_counts) > task.num_keys:
        raise ValueError(
            f"curriculum asks for {max(curriculum.pair_counts)} pairs but the task has only {task.num_keys} keys"
        )
    warmup_steps = max(1, steps // 20) if warmup_steps is None else warmup_steps

    mx.random.seed(seed)
    model = XLSTM(config) if init is None else XLSTM(config, init_profile=init, seed=seed)
    mx.eval(model.parameters())
    schedule = _lr_schedule(optim, lr, steps, warmup_steps, min_lr_ratio)
    optimizer = optim.AdamW(learning_rate=schedule, betas=list(betas), weight_decay=weight_decay)

    def loss_fn(model, ids, targets, mask, key_targets, key_mask, key_weight):
        logits = _forward(model, ids)
        recall_loss = masked_cross_entropy(logits, targets, mask)
        key_loss = masked_cross_entropy(logits, key_targets, key_mask)
        hits = (mx.argmax(logits, axis=-1) == targets) & mask
        return recall_loss + key_weight * key_loss, recall_loss, hits.sum() / mx.maximum(mask.sum(), 1), key_loss

    loss_and_grad = nn.value_and_grad(model, loss_fn)

    def step_fn(ids, targets, mask, key_targets, key_mask, key_weight):
        (_, loss, acc, key_loss), grads = loss_and_grad(model, ids, targets, mask, key_targets, key_mask, key_weight)
        grads, _ = optim.clip_grad_norm(grads, clip_norm)
        optimizer.update(model, grads)
        for block in model.blocks:  # an LTC with implicit_param_constraints false clips w, cm, gleak after a step
            constrain = getattr(getattr(block, "neurons", None), "apply_weight_constraints", None)
            if constrain is not None:
                constrain()
        return loss, acc, key_loss

    rng = np.random.default_rng(seed)
    chunk = int(getattr(config, "chunk_size", 1))
    compiled = compile and _forward_compiles(model, task, chunk)
    if compiled:
        step_state = [model.state, optimizer.state]
        step_fn = partial(mx.compile, inputs=step_state, outputs=step_state)(step_fn)

    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        task.save(out / TASK_NAME)
        log_file = open(out / LOG_NAME, "w", newline="")
        writer = csv.DictWriter(log_file, fieldnames=LOG_FIELDS)
        writer.writeheader()

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="train", unit="step")
    log: list[dict] = []
    loss_ema = acc_ema = None
    start = time.perf_counter()
    try:
        for step in range(1, steps + 1):
            num_pairs = curriculum.num_pairs(step - 1, rng)
            ids, targets, mask = task.sample(rng, num_pairs, curriculum.num_queries(num_pairs),
                                             batch_size=batch_size, pad_to_multiple=chunk)
            key_targets, key_mask = task.previous_key_targets(ids, num_pairs)
            scaffold = previous_key_steps is None or step <= previous_key_steps
            # The weight is an input, so switching the scaffold off does not re-trace the compiled step.
            key_weight = mx.array(previous_key_weight if scaffold else 0.0, dtype=mx.float32)
            lr_now = float(schedule(optimizer.step))
            loss, acc, key_loss = step_fn(mx.array(ids), mx.array(targets), mx.array(mask),
                                          mx.array(key_targets), mx.array(key_mask), key_weight)
            mx.eval(loss, acc, key_loss, model.parameters(), optimizer.state)
            loss, acc, key_loss = float(loss), float(acc), float(key_loss)
            if not math.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss} at step {step} (num_pairs={num_pairs})")
            loss_ema = loss if loss_ema is None else 0.9 * loss_ema + 0.1 * loss
            acc_ema = acc if acc_ema is None else 0.9 * acc_ema + 0.1 * acc
            if step % log_every == 0 or step == 1 or step == steps:
                row = {"step": step, "loss": round(loss, 6), "accuracy": round(acc, 6), "lr": lr_now,
                       "elapsed_s": round(time.perf_counter() - start, 3), "num_pairs": num_pairs,
                       "previous_key_loss": round(key_loss, 6)}
                log.append(row)
                if out is not None:
                    writer.writerow(row)
                    log_file.flush()
            if bar is not None:
                bar.set_postfix(loss=f"{loss_ema:.3f}", recall=f"{acc_ema:.1%}", pairs=num_pairs, refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if out is not None:
            log_file.close()
    elapsed = time.perf_counter() - start

    # Evaluated as trained: the curriculum's share of the keys is queried (all keys would let the last query
    # be answered by elimination).
    final_eval = {str(p): evaluate(model, task, p, num_samples=eval_samples, seed=seed + 1000,
                                   num_queries=curriculum.num_queries(p)) for p in eval_pairs}
    result = TrainResult(model=model, out_dir=out, log=log, final_eval=final_eval, elapsed_s=elapsed)
    if out is not None:
        model.save(out)
        summary = {
            "task": task.to_dict() | {"labels": None},
            "curriculum": asdict(curriculum),
            "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "weight_decay": weight_decay,
            "betas": list(betas), "init": getattr(init, "name", init),
            "warmup_steps": warmup_steps, "min_lr_ratio": min_lr_ratio, "clip_norm": clip_norm,
            "previous_key_weight": previous_key_weight, "previous_key_steps": previous_key_steps,
            "compiled": compiled, "train_seconds": round(elapsed, 1),
            "final_train_loss": log[-1]["loss"], "final_train_accuracy": log[-1]["accuracy"],
            "eval_accuracy_by_pairs": final_eval, "eval_samples": eval_samples, "eval_seed": seed + 1000,
            "machine": f"{platform.machine()} {platform.system()}",
        }
        (out / SUMMARY_NAME).write_text(json.dumps(summary, indent=1) + "\n")
    if bar is not None and final_eval:
        print("recall accuracy on fresh data: "
              + ", ".join(f"{p} pairs {a:.1%}" for p, a in final_eval.items()))
    return result


# -- `xlstm-viz train-demo` -------------------------------------------------------------------------------
def add_train_demo_parser(subparsers):
    """Register `train-demo` on an argparse subparsers object (called by xlstm_viz.cli)."""
    from xlstm_viz import demo

    recipe = demo.DEMO_RECIPE
    p = subparsers.add_parser(
        "train-demo",
        help="retrain the bundled demo model (xLSTM on multi-query associative recall)",
        description="Reproduce the shipped demo checkpoint: seeded MQAR training with MLX. Writes config.json, "
        "model.safetensors, task.json, training_log.csv and training.json to --out.",
    )
    p.add_argument("--model", choices=sorted(demo.RECIPES), default="demo",
                   help="which bundled model to reproduce: demo (2 mLSTM blocks) or hybrid (an AutoNCP-wired CfC "
                        "block + an mLSTM block); default %(default)s")
    p.add_argument("--out", required=True, help="output folder for the checkpoint and the training log")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the recipe's)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    p.add_argument("--seed", type=int, default=None, help="default: the recipe's")
    p.add_argument("--no-compile", action="store_true", help="run the training step eagerly")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train_demo)
    return p


def run_train_demo(args) -> int:
    from xlstm_viz import demo

    recipe = demo.RECIPES[getattr(args, "model", "demo")]

    def pick(name):
        value = getattr(args, name)
        return recipe[name] if value is None else value

    result = train(
        recipe["config"], MQARTask(**recipe["task"]),
        steps=pick("steps"), batch_size=pick("batch_size"), lr=pick("lr"), seed=pick("seed"),
        curriculum=Curriculum(**recipe["curriculum"]), out_dir=args.out, progress=not args.quiet,
        compile=not args.no_compile, eval_pairs=tuple(recipe["eval_pairs"]),
        **recipe.get("train_options", {}),
    )
    print(f"wrote {result.out_dir} in {result.elapsed_s:.0f} s")
    return 0
