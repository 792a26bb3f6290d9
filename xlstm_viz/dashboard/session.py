"""One browser session's model, prompt, runs and debugger, with every MLX call on one worker thread.

MLX evaluates an array only on the thread that built it, so a single-thread executor owns the model
from loading to `mx.eval` and hands numpy results to the UI. In a served session calls return at
once and results arrive through param changes (the views patch their sources under the document
lock); in a notebook or a test `threaded=False` makes each call wait for its result.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import param

from xlstm_viz.dashboard import model_graph

DEFAULT_PROMPT_PAIRS = 8
log = logging.getLogger(__name__)


def load_default_model(model_path=None):
    """`--model PATH` checkpoint, else the bundled demo; import BLAS first (33x faster CPU matmul)."""
    try:
        import xlstm_viz.blas  # noqa: F401
    except Exception:  # noqa: BLE001 - optional speed-up only
        pass
    import xlstm_viz

    if model_path is not None:
        model = xlstm_viz.load_model(model_path)
        if getattr(model, "block_kind", None) == "original":
            raise ValueError(
                f"{model_path} is an original xLSTM (xLSTMLMModel); the dashboard cannot show it yet. Use the Python "
                "API: model(ids, mode=..., observer=...)"
            )
        return model
    return xlstm_viz.load_demo()


def _on_model_thread() -> bool:
    return threading.current_thread().name.startswith("xlstm-viz-model")


# Model threads that may still be running, by native thread id. MLX keeps thread-local state whose destructor takes
# the GIL when the OS thread ends, which happens after `Thread.join` has returned. If the interpreter is finalizing by
# then, taking the GIL ends the thread by a forced unwind through that destructor: "terminate called without an
# active exception", exit code 134. So every model thread is stopped, and waited for until the OS has removed it,
# while the interpreter is still whole (atexit), also for sessions a script left open.
_TASKS = Path("/proc/self/task")
_workers: dict[int, ThreadPoolExecutor] = {}
_workers_lock = threading.Lock()


def _os_thread_exists(native_id: int) -> bool:
    """Whether the OS still runs this thread (Linux /proc; elsewhere unknown, and `join` has to do)."""
    return _TASKS.is_dir() and (_TASKS / str(native_id)).exists()


def _register_worker(native_id: int, pool: ThreadPoolExecutor) -> None:
    with _workers_lock:
        if _TASKS.is_dir():  # forget closed sessions whose threads are gone
            for tid in [t for t in _workers if not _os_thread_exists(t)]:
                del _workers[tid]
        _workers[native_id] = pool


@atexit.register
def stop_model_threads(timeout: float = 10.0) -> None:
    """Stop every session's model thread and wait until the OS thread is gone (runs at exit)."""
    with _workers_lock:
        workers = list(_workers.items())
        _workers.clear()
    for _, pool in workers:
        pool.shutdown(wait=True, cancel_futures=True)
    deadline = time.monotonic() + timeout
    for tid, _ in workers:
        while _os_thread_exists(tid) and time.monotonic() < deadline:
            time.sleep(0.005)


class ModelSession(param.Parameterized):
    """State of one dashboard session: model, prompt, latest/baseline traces, debugger, edits."""

    prompt = param.String(default="", doc="token labels/text, or space separated token ids")
    tokens = param.Parameter(default=None, doc="np.int32 [S] token ids of the current prompt")
    targets = param.Parameter(default=None, doc="MQAR targets [S] (for recall accuracy), or None")
    loss_mask = param.Parameter(default=None)
    trace = param.Parameter(default=None, doc="Trace of the latest run (numpy)")
    baseline = param.Parameter(default=None, doc="Trace the diff view compares against")
    accuracy = param.Number(default=None, allow_None=True)
    baseline_accuracy = param.Number(default=None, allow_None=True)
    step_event = param.Parameter(default=None, doc="StepEvent where the debugger stopped")
    debugger_state = param.Dict(default={}, doc="breakpoints, stop reason, finished")
    busy = param.Boolean(default=False)
    status = param.String(default="")
    last_run_ms = param.Number(default=0.0)
    graph_version = param.Integer(default=0, doc="bumps after every wiring edit of the model")
    edits = param.List(default=[], doc="replayable wiring edits: (scope, block, src, dst, polarity)")

    def __init__(self, model=None, model_path=None, threaded=False, on_error=None, **params):
        super().__init__(**params)
        self.threaded = threaded
        self.on_error = on_error
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xlstm-viz-model")
        _register_worker(self._pool.submit(threading.get_native_id).result(), self._pool)
        # a session dropped without close() still stops its thread (never waiting: GC may run on any thread)
        weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
        self._debugger = None
        # The model is built on the worker so its arrays belong to that thread.
        self.model = self._pool.submit(lambda: model if model is not None else load_default_model(model_path)).result()
        self.config = self.model.config
        self.task = getattr(self.model, "task", None)
        self.tokenizer = getattr(self.model, "tokenizer", None)

    # -- worker plumbing --------------------------------------------------------------------------
    def submit(self, work, done=None) -> Future:
        """Run `work()` on the model thread; then `done(result)`. Errors go to `on_error` (or raise)."""
        def task():
            try:
                result = work()
                if done is not None:
                    done(result)
                return result
            except Exception as exc:  # noqa: BLE001 - reported to the user, session keeps working
                log.warning("model-thread task failed: %s", exc, exc_info=True)
                self.busy = False
                self.status = f"error: {exc}"
                if self.on_error is not None:
                    self.on_error(exc)
                    return None
                raise

        if _on_model_thread():  # chained from a done() callback: run now, waiting would deadlock
            future = Future()
            future.set_result(task())
            return future
        future = self._pool.submit(task)
        if not self.threaded:
            future.result()
        return future

    def on_worker(self, fn):
        """Run `fn()` on the model thread and wait; runs inline when already there (no deadlock)."""
        if _on_model_thread():
            return fn()
        return self._pool.submit(fn).result()

    def close(self) -> None:
        """Stop the model thread after the task in progress (returns at once; the exit hook waits for it)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- prompt -----------------------------------------------------------------------------------
    def decode(self, ids) -> list[str]:
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        if self.task is not None:
            return self.task.decode(ids)
        if self.tokenizer is not None:
            return [self.tokenizer.decode([i]) for i in ids]
        return [str(i) for i in ids]

    def decode_one(self, i: int) -> str:
        # an id outside the task's labels raises; the tables show it as `#id` (trace_tables.safe_decode)
        return self.decode([i])[0]

    def parse_prompt(self, text: str) -> np.ndarray:
        """Text -> ids: task labels (K3 V7 ?), tokenizer text, or integers; the error names the bad piece."""
        text = text.strip()
        if not text:
            raise ValueError("the prompt is empty: type token ids, task labels, or click 'MQAR example'")
        parts = text.replace(",", " ").split()
        if all(p.lstrip("-").isdigit() for p in parts):
            ids = np.array([int(p) for p in parts], dtype=np.int32)
        elif self.task is not None:
            ids = self.task.encode(parts)
        elif self.tokenizer is not None:
            ids = np.array(self.tokenizer.encode(text).ids, dtype=np.int32)
        else:
            raise ValueError(f"this model has no tokenizer: give token ids (integers), got {parts[0]!r}")
        V = self.config.vocab_size
        bad = np.flatnonzero((ids < 0) | (ids >= V))
        if len(bad):
            raise ValueError(f"token id {int(ids[bad[0]])} at position {int(bad[0])} is outside the vocabulary [0, {V})")
        return ids

    def set_prompt(self, text: str, run: bool = True, targets=None, loss_mask=None) -> None:
        ids = self.parse_prompt(text)
        self.param.update(prompt=text, tokens=ids, targets=targets, loss_mask=loss_mask)
        self._debugger = None
        if run:
            self.run(new_baseline=True)

    def mqar_example(self, num_pairs: int = DEFAULT_PROMPT_PAIRS, seed: int = 0, run: bool = True) -> None:
        """One MQAR sequence from the model's task (the demo's own generator)."""
        if self.task is None:
            from xlstm_viz.tasks import MQARTask

            # A model not trained on MQAR still gets a well-formed example sized to its vocabulary.
            half = min(64, (self.config.vocab_size - 2) // 2)
            if half < 1:
                raise ValueError(f"model vocabulary ({self.config.vocab_size}) is too small for an MQAR example")
            task = MQARTask(num_keys=half, num_values=half)
            num_pairs = min(num_pairs, half)
        else:
            task = self.task
        batch = task.sample(np.random.default_rng(seed), num_pairs)
        ids = batch.input_ids[0]
        text = " ".join(task.decode(ids)) if self.task is not None else " ".join(map(str, ids))
        self.set_prompt(text, run=run, targets=batch.targets[0], loss_mask=batch.loss_mask[0])

    # -- runs -------------------------------------------------------------------------------------
    def _forward(self):
        import mlx.core as mx

        t0 = time.perf_counter()
        trace = self.model.run_with_trace(mx.array(self.tokens[None, :].astype(np.int32)), mode="stats")
        acc = None
        if self.targets is not None and self.loss_mask is not None and self.loss_mask.any():
            from xlstm_viz.tasks.mqar import recall_accuracy

            acc = recall_accuracy(trace.logits, self.targets[None], self.loss_mask[None])
        return trace, acc, (time.perf_counter() - t0) * 1000

    def run(self, new_baseline: bool = False) -> Future:
        """Re-run the model on the prompt; the first run (or new_baseline) becomes the diff baseline."""
        if self.tokens is None:
            raise ValueError("no prompt yet: call set_prompt(...) or mqar_example() first")
        self.busy = True

        def done(result):
            trace, acc, ms = result
            updates = dict(trace=trace, accuracy=acc, last_run_ms=ms, busy=False,
                           status=f"ran {trace.tokens.shape[1]} tokens in {ms:.0f} ms")
            if new_baseline or self.baseline is None or self.baseline.tokens.shape != trace.tokens.shape:
                updates.update(baseline=trace, baseline_accuracy=acc)
            self.param.update(**updates)

        return self.submit(self._forward, done)

    def set_baseline(self) -> None:
        """Make the latest run the baseline (the diff view then shows later toggles against it)."""
        if self.trace is not None:
            self.param.update(baseline=self.trace, baseline_accuracy=self.accuracy)

    # -- wiring edits -----------------------------------------------------------------------------
    def edit_connection(self, scope: str, block: int | None, src: str, dst: str, polarity: int, rerun: bool = True):
        """Set a block/cell connection to +1 (on), -1 (flipped) or 0 (off) on the model thread, then re-run."""
        def work():
            model_graph.set_connection(self._wiring(scope, block), src, dst, polarity)

        def done(_):
            self.edits = self.edits + [(scope, block, src, dst, int(polarity))]
            self._debugger = None
            self.graph_version += 1
            if rerun and self.tokens is not None:
                self.run()

        return self.submit(work, done)

    def sparsify(self, block: int, level: float, seed: int = 0, rerun: bool = True):
        """Regenerate the weight masks of one block's cell wiring at `level` (when the wiring supports it)."""
        def work():
            model_graph.set_sparsity(self.model.cell_wirings[block], level, seed)

        def done(_):
            self.edits = self.edits + [("sparsity", block, "", "", float(level), int(seed))]
            self.graph_version += 1
            if rerun and self.tokens is not None:
                self.run()

        return self.submit(work, done)

    def replay_edits(self, edits) -> None:
        """Apply saved edits (from a previous page load) on the model thread, no re-run."""
        def work():
            for e in edits:
                if e[0] == "sparsity":
                    model_graph.set_sparsity(self.model.cell_wirings[e[1]], e[4], e[5])
                else:
                    model_graph.set_connection(self._wiring(e[0], e[1]), e[2], e[3], e[4])

        def done(_):
            self.edits = [tuple(e) for e in edits]
            self.graph_version += 1

        self.submit(work, done)

    def _wiring(self, scope: str, block: int | None):
        if scope == "block":
            return self.model.block_wiring
        if scope == "cell":
            if block is None or not 0 <= block < len(self.model.cell_wirings):
                raise IndexError(f"block {block} out of range: the model has {len(self.model.cell_wirings)} blocks")
            return self.model.cell_wirings[block]
        raise ValueError(f"edit scope must be 'block' or 'cell', got {scope!r}")

    def graph(self, scope: str, block: int | None = None):
        """(names, [(src, dst, polarity)]) of a wiring, read on the model thread."""
        return self.on_worker(lambda: model_graph.connections(self._wiring(scope, block)))

    # -- interventions (ablations) ------------------------------------------------------------------
    def ablate(self, probe: str, rerun: bool = True):
        """Zero a cell's output (model.interventions), then re-run; `clear_ablations` undoes it."""
        def work():
            self.model.interventions.add(probe, "zero")

        def done(_):
            self.graph_version += 1
            if rerun and self.tokens is not None:
                self.run()

        return self.submit(work, done)

    def clear_ablations(self, rerun: bool = True):
        def done(_):
            self.graph_version += 1
            if rerun and self.tokens is not None:
                self.run()

        return self.submit(lambda: self.model.interventions.clear(), done)

    def ablations(self) -> list[str]:
        return self.on_worker(lambda: [i.describe() for i in self.model.interventions.list()])

    # -- debugger ---------------------------------------------------------------------------------
    def _dbg(self):
        if self._debugger is None:
            from xlstm_viz.execution import Debugger

            import mlx.core as mx

            self._debugger = Debugger(self.model, mx.array(self.tokens[None, :].astype(np.int32)), mode="recurrent")
        return self._debugger

    def debug(self, action: str, **kwargs):
        """action: step | step_over | step_token | continue | reset | add_breakpoint | remove_breakpoint."""
        if self.tokens is None:
            raise ValueError("no prompt yet: set a prompt before debugging")

        def work():
            dbg = self._dbg()
            ev = None
            if action == "step":
                ev = dbg.step()
            elif action == "step_over":
                ev = dbg.step_over()
            elif action == "step_token":
                ev = dbg.step_token()
            elif action == "continue":
                ev = dbg.continue_()
            elif action == "reset":
                dbg.reset()
            elif action == "add_breakpoint":
                dbg.add_breakpoint(**kwargs)
                ev = dbg.current
            elif action == "remove_breakpoint":
                dbg.remove_breakpoint(kwargs["id"])
                ev = dbg.current
            else:
                raise ValueError(f"unknown debugger action {action!r}")
            state = {
                "breakpoints": [(bp.id, bp.describe(), bp.hits) for bp in dbg.breakpoints],
                "stop_reason": dbg.stop_reason,
                "finished": dbg.finished,
                "steps": len(dbg.history),
            }
            return ev, state

        def done(result):
            ev, state = result
            self.param.update(step_event=ev, debugger_state=state)

        return self.submit(work, done)
