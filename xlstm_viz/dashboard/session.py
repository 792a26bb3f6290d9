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
MAX_PROMPT_CHARS = 100_000  # a prompt box limit that is stated, not a silent cut
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


STATE_NAMES = {1: "on", -1: "flipped", 0: "off"}


def _accuracy_change(before, after) -> str:
    if before is None and after is None:
        return ""
    fmt = lambda a: "n/a" if a is None else f"{a:.3f}"  # noqa: E731
    return f"; recall accuracy {fmt(before)} -> {fmt(after)}"


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
    last_action = param.String(default="", doc="what the latest edit did, in words (shown after its re-run)")
    example = param.Parameter(default=None, doc="(pairs, seed) when the prompt is an MQAR example, else None")
    baseline_edits = param.Integer(default=0, doc="how many of `edits` the baseline run had applied")

    def __init__(self, model=None, model_path=None, threaded=False, on_error=None, dispatch=None, **params):
        super().__init__(**params)
        self.threaded = threaded
        self.on_error = on_error
        # dispatch(fn) runs fn on the thread that owns the browser document (the app passes a next-tick scheduler).
        # Results are applied there, never on the model thread: param watchers update Panel widgets and Bokeh
        # models, and doing that from the model thread raced with the document and lost updates in the browser.
        self.dispatch = dispatch
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xlstm-viz-model")
        _register_worker(self._pool.submit(threading.get_native_id).result(), self._pool)
        # a session dropped without close() still stops its thread (never waiting: GC may run on any thread)
        weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
        self._debugger = None
        self._carried_breakpoints = []
        # The model is built on the worker so its arrays belong to that thread.
        self.model = self._pool.submit(lambda: model if model is not None else load_default_model(model_path)).result()
        self.config = self.model.config
        self.task = getattr(self.model, "task", None)
        self.tokenizer = getattr(self.model, "tokenizer", None)

    # -- worker plumbing --------------------------------------------------------------------------
    def submit(self, work, done=None) -> Future:
        """Run `work()` on the model thread, then `done(result)` on the document's thread (see `dispatch`).

        The returned future resolves after `done` ran. Errors go to `on_error` (the session keeps working);
        without `on_error` they are raised (unthreaded) or set on the future. Never wait on the future from
        the document's own thread in a threaded session: `done` is queued behind that wait.
        """
        outer: Future = Future()

        def fail(exc):
            log.warning("model-thread task failed: %s", exc, exc_info=exc)
            self.busy = False
            self.status = f"error: {exc}"
            if self.on_error is not None:
                self.on_error(exc)
                outer.set_result(None)
            else:
                outer.set_exception(exc)

        def finish(result):
            try:
                if done is not None:
                    done(result)
            except Exception as exc:  # noqa: BLE001 - reported to the user, session keeps working
                fail(exc)
                return
            outer.set_result(result)

        if not self.threaded or _on_model_thread():
            try:
                result = self.on_worker(work)
            except Exception as exc:  # noqa: BLE001
                fail(exc)
            else:
                finish(result)
            if outer.exception() is not None:
                raise outer.exception()
            return outer

        def task():
            try:
                result = work()
            except Exception as exc:  # noqa: BLE001
                self._deliver(lambda exc=exc: fail(exc))  # `exc` is unbound after the except block
                return
            self._deliver(lambda: finish(result))

        self._pool.submit(task)
        return outer

    def _deliver(self, fn) -> None:
        if self.dispatch is None:
            fn()
        else:
            self.dispatch(fn)

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
        if len(text) > MAX_PROMPT_CHARS:
            raise ValueError(f"the prompt is longer than the limit of {MAX_PROMPT_CHARS:,} characters; nothing was "
                             "cut or run: shorten it")
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

    def set_prompt(self, text: str, run: bool = True, targets=None, loss_mask=None, example=None) -> None:
        ids = self.parse_prompt(text)
        self.param.update(prompt=text, tokens=ids, targets=targets, loss_mask=loss_mask, example=example)
        self._restart_debugger("new prompt", new_input=True)
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
        self.set_prompt(text, run=run, targets=batch.targets[0], loss_mask=batch.loss_mask[0],
                        example=(int(num_pairs), int(seed)))

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

    def run(self, new_baseline: bool = False, announce: str | None = None) -> Future:
        """Re-run the model on the prompt; the first run (or new_baseline) becomes the diff baseline.

        `announce` (what an edit did) becomes `last_action`, with the recall accuracy before -> after.
        """
        if self.tokens is None:
            raise ValueError("no prompt yet: call set_prompt(...) or mqar_example() first")
        self.busy = True
        acc_before = self.accuracy

        def done(result):
            trace, acc, ms = result
            updates = dict(trace=trace, accuracy=acc, last_run_ms=ms, busy=False,
                           status=f"ran {trace.tokens.shape[1]} tokens in {ms:.0f} ms")
            if announce is not None:
                updates["last_action"] = announce + _accuracy_change(acc_before, acc)
            if new_baseline or self.baseline is None or self.baseline.tokens.shape != trace.tokens.shape:
                updates.update(baseline=trace, baseline_accuracy=acc, baseline_edits=len(self.edits))
            self.param.update(**updates)

        return self.submit(self._forward, done)

    def set_baseline(self) -> None:
        """Make the latest run the baseline (the diff view then shows later toggles against it)."""
        if self.trace is not None:
            self.param.update(baseline=self.trace, baseline_accuracy=self.accuracy, baseline_edits=len(self.edits))

    # -- wiring edits -----------------------------------------------------------------------------
    def edit_connection(self, scope: str, block: int | None, src: str, dst: str, polarity: int, rerun: bool = True):
        """Set a block/cell connection to +1 (on), -1 (flipped) or 0 (off) on the model thread, then re-run."""
        def work():
            wiring = self._wiring(scope, block)
            old = model_graph.connection_state(wiring, src, dst)
            model_graph.set_connection(wiring, src, dst, polarity)
            return old

        def done(old):
            where = "block wiring" if scope == "block" else f"cell wiring of block {block}"
            said = f"{where}: {src} -> {dst} {STATE_NAMES[old]} -> {STATE_NAMES[int(polarity)]}"
            self.edits = self.edits + [(scope, block, src, dst, int(polarity))]
            self._restart_debugger(said)
            self.graph_version += 1
            if rerun and self.tokens is not None:
                self.run(announce=said)
            else:
                self.last_action = said

        return self.submit(work, done)

    def sparsify(self, block: int, level: float, seed: int = 0, rerun: bool = True):
        """Regenerate the weight masks of one block's cell wiring at `level` (when the wiring supports it)."""
        def work():
            model_graph.set_sparsity(self.model.cell_wirings[block], level, seed)

        def done(_):
            said = f"cell wiring of block {block}: weight masks regenerated at sparsity {level:g} (seed {seed})"
            self.edits = self.edits + [("sparsity", block, "", "", float(level), int(seed))]
            self._restart_debugger(said)
            self.graph_version += 1
            if rerun and self.tokens is not None:
                self.run(announce=said)
            else:
                self.last_action = said

        return self.submit(work, done)

    def replay_edits(self, edits) -> Future:
        """Apply saved edits (from a previous page load) on top of the current ones, on the model thread; no re-run."""
        def work():
            for e in edits:
                if e[0] == "sparsity":
                    model_graph.set_sparsity(self.model.cell_wirings[e[1]], e[4], e[5])
                else:
                    model_graph.set_connection(self._wiring(e[0], e[1]), e[2], e[3], e[4])

        def done(_):
            self.edits = self.edits + [tuple(e) for e in edits]
            self._restart_debugger(f"{len(edits)} saved edits replayed")
            self.graph_version += 1

        return self.submit(work, done)

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
    def ablate(self, probe: str, rerun: bool = True, heads=None, tokens=None):
        """Zero a cell's output (model.interventions), optionally only some heads / token positions, then re-run;
        `clear_ablations` undoes it. Bad heads or positions are refused by name (interventions.add, the run)."""
        self.check_probe(probe)
        if tokens is not None and self.tokens is not None:
            bad = [t for t in tokens if not 0 <= int(t) < len(self.tokens)]
            if bad:
                raise ValueError(f"ablation position {bad[0]} is outside the prompt: positions are "
                                 f"0..{len(self.tokens) - 1}")

        def work():
            return self.model.interventions.add(probe, "zero", heads=heads, tokens=tokens).describe()

        def done(described):
            said = f"ablation {described}: set to zero"
            self._restart_debugger(said)
            self.graph_version += 1
            if rerun and self.tokens is not None:
                self.run(announce=said)
            else:
                self.last_action = said

        return self.submit(work, done)

    def check_probe(self, probe) -> str:
        """`probe` if this model has such a cell, else ValueError naming it and what exists."""
        names = self.probe_names()
        if isinstance(probe, str) and probe in names:
            return probe
        text = "" if not isinstance(probe, str) else probe.strip()
        if not text:
            raise ValueError("no cell given: type a probe name such as blocks.0.mlstm.igate")
        parts = text.split(".")
        nb = self.config.num_blocks
        if parts[0] == "blocks" and len(parts) > 1 and parts[1].isdigit() and int(parts[1]) >= nb:
            raise ValueError(f"no cell {probe!r}: block {parts[1]} does not exist, the model has blocks 0..{nb - 1}")
        import difflib

        near = difflib.get_close_matches(text, names, n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else f"; cells are named like {names[3]}"
        raise ValueError(f"no cell {probe!r} in this model{hint}")

    def probe_names(self) -> list[str]:
        if not hasattr(self, "_probe_names"):
            self._probe_names = self.on_worker(lambda: list(self.model.probe_names()))
        return self._probe_names

    def clear_ablations(self, rerun: bool = True):
        def done(_):
            said = "ablations cleared"
            self._restart_debugger(said)
            self.graph_version += 1
            if rerun and self.tokens is not None:
                self.run(announce=said)
            else:
                self.last_action = said

        return self.submit(lambda: self.model.interventions.clear(), done)

    def ablations(self) -> list[str]:
        return self.on_worker(lambda: [i.describe() for i in self.model.interventions.list()])

    # -- debugger ---------------------------------------------------------------------------------
    def _dbg(self):
        if self._debugger is None:
            from xlstm_viz.execution import Debugger

            import mlx.core as mx

            self._debugger = Debugger(self.model, mx.array(self.tokens[None, :].astype(np.int32)), mode="recurrent")
            for probe, condition, token in self._carried_breakpoints:  # breakpoints survive a new prompt
                self._debugger.add_breakpoint(probe=probe, condition=condition, token=token)
            self._carried_breakpoints = []
        return self._debugger

    @staticmethod
    def _debugger_summary(dbg, reason: str | None = None) -> dict:
        return {"breakpoints": [(bp.id, bp.describe(), bp.hits) for bp in dbg.breakpoints] if dbg else [],
                "stop_reason": reason if reason is not None else dbg.stop_reason,
                "finished": False if reason is not None else dbg.finished,
                "steps": 0 if reason is not None else len(dbg.history)}

    def _restart_debugger(self, reason: str, new_input: bool = False) -> None:
        """The model or the prompt changed: a stop point of the old run would be stale, so start again.

        Breakpoints are kept; the debugger stands before the first cell and says why.
        """
        dbg = self._debugger
        if dbg is None and self.step_event is None and not self.debugger_state:
            return
        if new_input:
            if dbg is not None:
                self._carried_breakpoints = [(bp.probe, bp.condition, bp.token) for bp in dbg.breakpoints]
            self._debugger = None
            state = self._debugger_summary(dbg, f"restarted: {reason}")
            self.param.update(step_event=None, debugger_state=state)
            return

        def work():
            if dbg is not None:
                dbg.reset()  # the executor reads the edited wiring on its next step
            return self._debugger_summary(dbg, f"restarted: {reason}")

        self.submit(work, lambda state: self.param.update(step_event=None, debugger_state=state))

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
            return ev, self._debugger_summary(dbg)

        def done(result):
            ev, state = result
            self.param.update(step_event=ev, debugger_state=state)

        return self.submit(work, done)
