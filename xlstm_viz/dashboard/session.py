"""One browser session's model, prompt, runs and debugger, with every MLX call on one worker thread.

Data flows one way. Commands (set a prompt, toggle, sparsify, undo, ablate, step...) are messages to the session's
model thread, which owns the model view, its edit log, the debugger and the runs. After each command that thread
builds one immutable `RunResult` (the trace, its diff against the baseline computed once, the graph tables, the
ablations, the debugger's stop) and saves the session file, in command order; the result then reaches the document
in one scheduled update (`dispatch`, a held next-tick callback in a served app). Views are functions of the result
and never call back into the worker. In a notebook or a test `threaded=False` runs each command inline.

The weights are loaded once per process and shared read-only (`shared_model`); each session gets its own view of
them (`XLSTM.shared_view`: own wirings and interventions, same parameter arrays).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import queue
import re
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import param

from xlstm_viz.dashboard import debug_commands, model_graph
from xlstm_viz.model_edits import EditLog

DEFAULT_PROMPT_PAIRS = 8
MAX_PROMPT_CHARS = 100_000  # a prompt box limit that is stated, not a silent cut
log = logging.getLogger(__name__)


_shared: dict[str | None, Any] = {}
_shared_lock = threading.Lock()


def shared_model(model_path=None):
    """The model at `model_path` (None: the demo), loaded once per process; sessions take `shared_view()`s of it."""
    key = None if model_path is None else str(Path(model_path).resolve())
    with _shared_lock:
        if key not in _shared:
            import mlx.core as mx

            model = load_default_model(model_path)
            mx.eval(model.parameters())  # materialised arrays may be read from every session's thread
            _shared[key] = model
        return _shared[key]


def session_model(model=None, model_path=None):
    """The model a session works on: `model` itself when given, else a view of the shared weights."""
    if model is not None:
        return model
    base = shared_model(model_path)
    return base.shared_view() if hasattr(base, "shared_view") else load_default_model(model_path)


def load_default_model(model_path=None):
    """`--model PATH` checkpoint, else the bundled demo; import BLAS first (33x faster CPU matmul)."""
    try:
        import xlstm_viz.blas  # noqa: F401
    except Exception:  # noqa: BLE001 - optional speed-up only
        pass
    import xlstm_viz

    from xlstm_viz.demo import DEMOS

    if model_path in DEMOS:  # a bundled model by name ("demo", "hybrid")
        return xlstm_viz.load_demo(name=model_path)
    if model_path is not None:
        return xlstm_viz.load_model(model_path)  # an original xLSTM folder loads as registry blocks too
    return xlstm_viz.load_demo()


STATE_NAMES = {1: "on", -1: "flipped", 0: "off"}


def _accuracy_change(before, after) -> str:
    if before is None and after is None:
        return ""
    fmt = lambda a: "n/a" if a is None else f"{a:.3f}"  # noqa: E731
    return f"; recall accuracy {fmt(before)} -> {fmt(after)}"


def _on_model_thread() -> bool:
    return threading.current_thread().name.startswith("xlstm-viz-model")


# Model threads are reused, not ended: MLX keeps a native thread per Python thread that used it (its stream), and it
# outlives the Python thread, so one thread per session leaked one OS thread per session (13 -> 33 after 20
# sessions). A closed session hands its thread back to an idle pool; the next session takes it. Threads then number
# the most sessions open at once, and every open session still has its own thread (a long run in one never queues
# another session's click).
#
# At exit: MLX's thread-local destructor takes the GIL when the OS thread ends, which happens after `Thread.join`
# has returned. If the interpreter is finalizing by then, taking the GIL ends the thread by a forced unwind through
# that destructor: "terminate called without an active exception", exit code 134. So every model thread is stopped,
# and waited for until the OS has removed it, while the interpreter is still whole (atexit), also for sessions a
# script left open.
_TASKS = Path("/proc/self/task")
_threads: list["_ModelThread"] = []
_idle: list["_ModelThread"] = []
_threads_lock = threading.Lock()
_thread_ids = itertools.count()


def _os_thread_exists(native_id: int) -> bool:
    """Whether the OS still runs this thread (Linux /proc; elsewhere unknown, and `join` has to do)."""
    return _TASKS.is_dir() and (_TASKS / str(native_id)).exists()


def _name_os_thread(name: str) -> None:
    """Give the calling thread an OS-level name (Linux: `top -H`, /proc/<pid>/task/*/comm, py-spy), so that a
    profile or the load benchmark can tell the model threads from the server's main thread and native ones."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


class _ModelThread:
    """A long-lived thread that runs queued calls in order; lent to one session at a time (`_Lease`)."""

    def __init__(self):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=f"xlstm-viz-model-{next(_thread_ids)}", daemon=True)
        self.thread.start()
        self.native_id = self.call(threading.get_native_id)

    def call(self, fn):
        fut: Future = Future()
        self._queue.put((fut, fn, None))
        return fut.result()

    def _loop(self) -> None:
        _name_os_thread(f"xv-model-{self.thread.name.rsplit('-', 1)[-1]}")
        while True:
            item = self._queue.get()
            if item is None:
                return
            fut, fn, lease = item
            if fut is None:  # the lease ended: back to the idle pool, for the next session
                with _threads_lock:
                    if self in _threads:
                        _idle.append(self)
                continue
            if (lease is not None and lease.released) or not fut.set_running_or_notify_cancel():
                fut.cancel()
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiter
                fut.set_exception(exc)


class _Lease:
    """One session's use of a model thread: `submit` queues a call, `shutdown` skips what is still queued."""

    def __init__(self):
        with _threads_lock:
            thread = _idle.pop() if _idle else None
        if thread is None:
            thread = _ModelThread()
            with _threads_lock:
                _threads.append(thread)
        self.thread = thread
        self.released = False

    def submit(self, fn) -> Future:
        if self.released:
            raise RuntimeError("this session is closed: its model thread takes no more work")
        fut: Future = Future()
        self.thread._queue.put((fut, fn, self))
        return fut

    def shutdown(self, wait: bool = False, cancel_futures: bool = True) -> None:
        if self.released:
            return
        self.released = True
        self.thread._queue.put((None, None, self))


def model_thread_count() -> int:
    """Model threads this process has started (open sessions plus idle ones)."""
    with _threads_lock:
        return len(_threads)


@atexit.register
def stop_model_threads(timeout: float = 10.0) -> None:
    """Stop every model thread and wait until the OS thread is gone (runs at exit)."""
    with _threads_lock:
        threads = list(_threads)
        _threads.clear()
        _idle.clear()
    for t in threads:
        t._queue.put(None)
    deadline = time.monotonic() + timeout
    for t in threads:
        t.thread.join(max(0.0, deadline - time.monotonic()))
        while _os_thread_exists(t.native_id) and time.monotonic() < deadline:
            time.sleep(0.005)




@dataclass(frozen=True)
class Graphs:
    """(names, [(src, dst, state)]) of the block wiring and of each block's cell wiring, read on the model thread."""

    block: tuple
    cells: tuple
    info: dict = field(default_factory=dict)  # node name -> (shape/parameter line, count), model_graph.node_info

    def of(self, scope: str, block: int | None = None):
        if scope == "block":
            return self.block
        if block is None or not 0 <= block < len(self.cells):
            raise IndexError(f"block {block} out of range: the model has {len(self.cells)} blocks")
        return self.cells[block]


@dataclass(frozen=True)
class RunResult:
    """Everything the views show after one command, built once on the model thread (treat as read-only)."""

    seq: int
    graphs: Graphs
    trace: Any = None
    baseline: Any = None
    accuracy: float | None = None
    baseline_accuracy: float | None = None
    run_ms: float = 0.0
    diff: Any = None  # trace - baseline per probe/stat (trace_tables.StatsView), None when they cannot be compared
    logit_change: dict | None = None  # trace_tables.logit_change_table(trace, baseline)
    ablations: tuple = ()
    edits: tuple = ()  # a summary tuple per applied edit action, oldest first
    undoable: int = 0
    redoable: int = 0
    baseline_edits: int = 0
    step_event: Any = None
    debugger_state: dict = field(default_factory=dict)
    last_action: str = ""
    status: str = ""
    refused: tuple = ()  # what a restore or an import could not apply, each with its reason


class _State:
    """What the model thread owns besides the model: only that thread reads or writes it."""

    def __init__(self, model):
        self.log = EditLog(model)
        self.tokens = self.targets = self.loss_mask = None
        self.prompt, self.example = "", None
        self.trace = self.baseline = None
        self.accuracy = self.baseline_accuracy = None
        self.run_ms = 0.0
        self.baseline_edits = 0
        self.debugger = None
        self.breakpoints: list[dict] = []  # kept while no debugger exists (no prompt yet, new prompt)
        self.step_event, self.debugger_state = None, {}
        self.extra: dict = {}  # saved with the session, owned by the app (the NCPS wiring)
        self.seq = 0
        self.result: RunResult | None = None
        self.graphs_key = None
        self.diff_key = None


class ModelSession(param.Parameterized):
    """State of one dashboard session, as last reported by its model thread (`result`), and its commands."""

    result = param.Parameter(default=None, doc="RunResult of the latest command (what the views show)")
    prompt = param.String(default="", doc="token labels/text, or space separated token ids")
    tokens = param.Parameter(default=None, doc="np.int32 [S] token ids of the current prompt")
    targets = param.Parameter(default=None, doc="MQAR targets [S] (for recall accuracy), or None")
    loss_mask = param.Parameter(default=None)
    example = param.Parameter(default=None, doc="(pairs, seed) when the prompt is an MQAR example, else None")
    # mirrors of `result`, for notebooks and tests
    trace = param.Parameter(default=None, doc="Trace of the latest run (numpy)")
    baseline = param.Parameter(default=None, doc="Trace the diff view compares against")
    accuracy = param.Number(default=None, allow_None=True)
    baseline_accuracy = param.Number(default=None, allow_None=True)
    step_event = param.Parameter(default=None, doc="StepEvent where the debugger stopped")
    debugger_state = param.Dict(default={}, doc="breakpoints, stop reason, finished")
    edits = param.List(default=[], doc="a summary tuple per applied edit action (the log itself is the wirings')")
    baseline_edits = param.Integer(default=0, doc="how many edit actions the baseline run had applied")
    last_action = param.String(default="", doc="what the latest edit did, in words (shown after its re-run)")
    busy = param.Boolean(default=False)
    status = param.String(default="")
    last_run_ms = param.Number(default=0.0)
    graph_version = param.Integer(default=0, doc="bumps when the wirings' graph tables change")

    def __init__(self, model=None, model_path=None, threaded=False, on_error=None, dispatch=None, store=None,
                 **params):
        super().__init__(**params)
        self.threaded = threaded
        self.on_error = on_error
        # dispatch(fn) runs fn on the thread that owns the browser document (the app passes a held next-tick
        # scheduler): results are applied there, never on the model thread.
        self.dispatch = dispatch
        self.store = store  # SessionStore written by the model thread after each command (None: not saved)
        self._pending = 0
        self._pool = _Lease()  # a model thread of its own while open (reused after close: see _ModelThread)
        # a session dropped without close() still stops its thread (never waiting: GC may run on any thread)
        weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
        # The model (a view of the shared weights) is built on the worker so its arrays belong to that thread.
        self.model = self._pool.submit(lambda: session_model(model, model_path)).result()
        self.config = self.model.config
        self.task = getattr(self.model, "task", None)
        self.tokenizer = getattr(self.model, "tokenizer", None)
        self._probe_names = None
        self._w = self._pool.submit(lambda: _State(self.model)).result()
        # the first result (graph tables, no run yet) is there before any view is built, also in a served session
        self._apply(self._pool.submit(lambda: self._build_result(self._w, "")).result())

    # -- worker plumbing --------------------------------------------------------------------------
    def _command(self, work, said: str | None = None, rerun: bool = False) -> Future:
        """Run `work(state)` on the model thread; then (re-run if asked) build the result, save, deliver it.

        `work` may return a string: what the command did, in words (else `said`). The future resolves after the
        result was applied on the document's thread. Errors go to `on_error` (the session keeps working); without
        it they are raised (unthreaded) or set on the future.
        """
        outer: Future = Future()
        self._pending += 1
        self.busy = True
        acc_before = self.accuracy

        def task():
            st = self._w
            text = work(st)
            text = said if text is None else text
            if rerun and st.tokens is not None:
                self._forward(st)
                if text:
                    text += _accuracy_change(acc_before, st.accuracy)
            result = self._build_result(st, text)
            self._save(st)
            return result

        def fail(exc):
            log.warning("model-thread task failed: %s", exc, exc_info=exc)
            self._pending = max(0, self._pending - 1)
            self.param.update(busy=self._pending > 0, status=f"error: {exc}")
            if self.on_error is not None:
                self.on_error(exc)
                outer.set_result(None)
            else:
                outer.set_exception(exc)

        def finish(result):
            self._pending = max(0, self._pending - 1)
            try:
                self._apply(result)
            except Exception as exc:  # noqa: BLE001 - reported to the user, session keeps working
                fail(exc)
                return
            outer.set_result(result)

        if not self.threaded or _on_model_thread():
            try:
                result = self.on_worker(task)
            except Exception as exc:  # noqa: BLE001
                fail(exc)
            else:
                finish(result)
            if outer.exception() is not None:
                raise outer.exception()
            return outer

        def run():
            try:
                result = task()
            except Exception as exc:  # noqa: BLE001
                self._deliver(lambda exc=exc: fail(exc))  # `exc` is unbound after the except block
                return
            self._deliver(lambda: finish(result))

        self._pool.submit(run)
        return outer

    def submit(self, work, done=None) -> Future:
        """Run `work()` on the model thread and `done(value)` on the document's thread (no result is built)."""
        outer: Future = Future()

        def finish(value):
            if done is not None:
                done(value)
            outer.set_result(value)

        if not self.threaded or _on_model_thread():
            finish(self.on_worker(work))
            return outer

        def fail(exc):
            # shown like a command's error (a served page's toast): a patch, sweep or score that failed on the
            # model thread used to end with no message at all
            if self.on_error is not None:
                self.on_error(exc)
            outer.set_exception(exc)

        def run():
            try:
                value = work()
            except Exception as exc:  # noqa: BLE001
                log.warning("model-thread task failed: %s", exc, exc_info=exc)
                self._deliver(lambda exc=exc: fail(exc))  # `exc` is unbound after the except block
                return
            self._deliver(lambda: finish(value))

        self._pool.submit(run)
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
        """Give the model thread back after the task in progress (returns at once); queued commands are dropped."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def closed(self) -> bool:
        return self._pool.released

    def _apply(self, r: RunResult) -> None:
        """Show a result: one batch of param changes (a served app holds the document around it)."""
        prev = self.result
        updates = dict(result=r, trace=r.trace, baseline=r.baseline, accuracy=r.accuracy,
                       baseline_accuracy=r.baseline_accuracy, step_event=r.step_event,
                       debugger_state=r.debugger_state, edits=list(r.edits), baseline_edits=r.baseline_edits,
                       last_run_ms=r.run_ms, busy=self._pending > 0, status=r.status)
        if r.last_action:
            updates["last_action"] = r.last_action
        if prev is None or prev.graphs is not r.graphs:
            updates["graph_version"] = self.graph_version + 1
        self.param.update(**updates)

    # -- on the model thread ----------------------------------------------------------------------
    def _graphs(self, st: _State) -> Graphs:
        m = self.model
        key = (m.block_wiring.version, tuple(w.version for w in m.cell_wirings))
        if st.result is not None and st.graphs_key == key:
            return st.result.graphs
        st.graphs_key = key
        return Graphs(model_graph.connections(m.block_wiring),
                      tuple(model_graph.connections(w) for w in m.cell_wirings), model_graph.node_info(m))

    def _diff(self, st: _State):
        """The trace - baseline diff and logit table, computed once per (trace, baseline) pair."""
        from xlstm_viz.dashboard import trace_tables

        if st.trace is None or st.baseline is None or st.trace.tokens.shape != st.baseline.tokens.shape:
            return None, None
        key = (id(st.trace), id(st.baseline))
        if st.result is not None and st.diff_key == key:
            return st.result.diff, st.result.logit_change
        st.diff_key = key
        return (trace_tables.diff_trace(st.trace, st.baseline),
                trace_tables.logit_change_table(st.trace, st.baseline, decode=self.decode_one))

    def _build_result(self, st: _State, said: str | None, **extra) -> RunResult:
        st.seq += 1
        diff, logits = self._diff(st)
        n = 0 if st.trace is None else st.trace.tokens.shape[1]
        status = "" if st.trace is None else f"ran {n} token{'' if n == 1 else 's'} in {st.run_ms:.0f} ms"
        st.result = RunResult(
            seq=st.seq, graphs=self._graphs(st), trace=st.trace, baseline=st.baseline, accuracy=st.accuracy,
            baseline_accuracy=st.baseline_accuracy, run_ms=st.run_ms, diff=diff, logit_change=logits,
            ablations=tuple(i.describe() for i in self.model.interventions.list()),
            edits=tuple(a.key for a in st.log.actions), undoable=len(st.log.actions), redoable=len(st.log.undone),
            baseline_edits=st.baseline_edits, step_event=st.step_event, debugger_state=dict(st.debugger_state),
            last_action=said or "", status=status, refused=getattr(st, "pending_refused", ()), **extra)
        st.pending_refused = ()
        return st.result

    def _forward(self, st: _State, new_baseline: bool = False) -> None:
        import mlx.core as mx

        t0 = time.perf_counter()
        # eager: nearly every command edits the wiring or the interventions, and a compiled trace would trace and
        # compile its graph again after each (seconds on a 7B model, where eager costs ~50 ms more)
        trace = self.model.run_with_trace(mx.array(st.tokens[None, :].astype(np.int32)), mode="stats",
                                          compiled=False)
        acc = None
        if st.targets is not None and st.loss_mask is not None and st.loss_mask.any():
            from xlstm_viz.tasks.mqar import recall_accuracy

            acc = recall_accuracy(trace.logits, st.targets[None], st.loss_mask[None])
        st.trace, st.accuracy, st.run_ms = trace, acc, (time.perf_counter() - t0) * 1000
        if new_baseline or st.baseline is None or st.baseline.tokens.shape != trace.tokens.shape:
            st.baseline, st.baseline_accuracy, st.baseline_edits = trace, acc, len(st.log.actions)

    def state_dict(self, st: _State | None = None) -> dict:
        """What the session file holds (read on the model thread: it owns these)."""
        st = st or self._w
        saveable = [i for i in self.model.interventions.list() if i.kind in ("zero", "scale") and i.source is None]
        return {**st.extra, "prompt": st.prompt, "example": list(st.example) if st.example else None,
                "edits": st.log.to_doc()["actions"], "baseline_edits": st.baseline_edits,
                "redo": [a.to_json() for a in reversed(st.log.undone)],  # the next one to redo first
                "ablations": [{"probe": i.probe, "kind": i.kind, "value": i.value,
                               "tokens": None if i.tokens is None else list(i.tokens),
                               "heads": None if i.heads is None else list(i.heads),
                               **({"inside": True} if i.inside else {})} for i in saveable],
                "breakpoints": self._breakpoints(st)}

    def _save(self, st: _State) -> None:
        if self.store is not None:
            self.store.save(self.state_dict(st), revision=st.seq)

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
        if not isinstance(text, str):
            raise ValueError(f"the prompt must be text, got {type(text).__name__} {text!r}"[:200])
        if len(text) > MAX_PROMPT_CHARS:
            raise ValueError(f"the prompt is longer than the limit of {MAX_PROMPT_CHARS:,} characters; nothing was "
                             "cut or run: shorten it")
        text = text.strip()
        if not text:
            raise ValueError("the prompt is empty: type token ids, task labels, or click 'MQAR example'")
        parts = text.replace(",", " ").split()
        V = self.config.vocab_size
        # decimal numbers only: str.isdigit() also passes '²', which int() refuses with no position named
        if all(re.fullmatch(r"-?\d+", p) for p in parts):
            values = [int(p) for p in parts]
            # checked as Python ints: an id past int32 ("99999999999999999999") must get this message too
            for pos, v in enumerate(values):
                if not 0 <= v < V:
                    raise ValueError(f"token id {v} at position {pos} is outside the vocabulary [0, {V})")
            ids = np.array(values, dtype=np.int32)
        elif self.task is not None:
            ids = self.task.encode(parts)
        elif self.tokenizer is not None:
            ids = np.array(self.tokenizer.encode(text).ids, dtype=np.int32)
        else:
            pos, bad = next((i, p) for i, p in enumerate(parts) if not re.fullmatch(r"-?\d+", p))
            raise ValueError(f"this model has no tokenizer: give token ids (integers), got {bad!r} at position {pos}")
        bad = np.flatnonzero((ids < 0) | (ids >= V))
        if len(bad):
            raise ValueError(f"token id {int(ids[bad[0]])} at position {int(bad[0])} is outside the vocabulary [0, {V})")
        return ids

    def _set_input(self, st: _State, text, ids, targets, loss_mask, example) -> None:
        st.prompt, st.tokens, st.targets, st.loss_mask, st.example = text, ids, targets, loss_mask, example
        self._restart_debugger(st, "new prompt", new_input=True)

    def set_prompt(self, text: str, run: bool = True, targets=None, loss_mask=None, example=None) -> Future:
        ids = self.parse_prompt(text)  # a bad prompt is refused here, before any message is sent
        self.param.update(prompt=text, tokens=ids, targets=targets, loss_mask=loss_mask, example=example)

        def work(st):
            self._set_input(st, text, ids, targets, loss_mask, example)
            if run:
                self._forward(st, new_baseline=True)

        return self._command(work, "")

    def example_batch(self, num_pairs: int = DEFAULT_PROMPT_PAIRS, seed: int = 0):
        """(text, targets, loss_mask, num_pairs) of one MQAR sequence from the model's task (the demo's generator)."""
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
        return text, batch.targets[0], batch.loss_mask[0], int(num_pairs)

    def mqar_example(self, num_pairs: int = DEFAULT_PROMPT_PAIRS, seed: int = 0, run: bool = True) -> Future:
        text, targets, mask, num_pairs = self.example_batch(num_pairs, seed)
        return self.set_prompt(text, run=run, targets=targets, loss_mask=mask, example=(num_pairs, int(seed)))

    # -- runs -------------------------------------------------------------------------------------
    def run(self, new_baseline: bool = False) -> Future:
        """Re-run the model on the prompt; the first run (or new_baseline) becomes the diff baseline."""
        if self.tokens is None:
            raise ValueError("no prompt yet: call set_prompt(...) or mqar_example() first")
        return self._command(lambda st: self._forward(st, new_baseline=new_baseline), "")

    def set_baseline(self) -> Future:
        """Make the latest run the baseline (the diff view then shows later toggles against it)."""
        def work(st):
            if st.trace is not None:
                st.baseline, st.baseline_accuracy, st.baseline_edits = st.trace, st.accuracy, len(st.log.actions)
            return "the latest run is now the baseline"

        return self._command(work)

    # -- wiring edits (one path: the wirings' own histories, ordered by the edit log) -------------------
    def _edit(self, st: _State, said: str, key: tuple, fn) -> str:
        st.log.record(said, fn, key)
        self._restart_debugger(st, said)
        return said

    def edit_connection(self, scope: str, block: int | None, src: str, dst: str, polarity: int, rerun: bool = True):
        """Set a block/cell connection to +1 (on), -1 (flipped) or 0 (off) on the model thread, then re-run."""
        def work(st):
            wiring = self._wiring(scope, block)
            old = model_graph.connection_state(wiring, src, dst)
            where = "block wiring" if scope == "block" else f"cell wiring of block {block}"
            said = f"{where}: {src} -> {dst} {STATE_NAMES[old]} -> {STATE_NAMES[int(polarity)]}"
            return self._edit(st, said, (scope, block, src, dst, int(polarity)),
                              lambda: model_graph.set_connection(wiring, src, dst, polarity))

        return self._command(work, rerun=rerun)

    def neuron_wiring(self, block: int):
        """The NCP wiring of neuron block `block` (cfc, ltc, ncp_slstm, ncp_mlstm); other blocks are refused by name."""
        blocks = self.model.blocks
        if not 0 <= int(block) < len(blocks):
            raise ValueError(f"block {block} does not exist: the model has {len(blocks)} blocks")
        wiring = getattr(blocks[block], "wiring", None)
        if wiring is None:
            raise ValueError(f"block {block} is a {getattr(blocks[block], 'block_type', '?')!r} block, which has no "
                             "neuron wiring (neuron blocks: " + ", ".join(
                                 str(j) for j, b in enumerate(blocks) if getattr(b, "wiring", None) is not None) + ")")
        return wiring

    def edit_synapse(self, block: int, kind: str, src: int, dst: int, polarity: int, rerun: bool = True,
                     announce: str | None = None, done=None):
        """Set one synapse of a neuron block's NCP wiring on the model thread (undoable in the wiring's history),
        then re-run; `done()` runs on the document's thread after the edit (before the re-run's result)."""
        def work(st):
            wiring = self.neuron_wiring(block)
            m = wiring.sensory_adjacency_matrix if kind == "sensory" else wiring.adjacency_matrix
            old = int(m[src, dst])
            said = announce or f"block {block} {kind} synapse {src} -> {dst}: {old:+d} -> {int(polarity):+d}"
            said = f"blocks.{block}: {said}"
            # one action of the edit log: undo/redo/reset, saves and exports carry it like every other edit
            self._edit(st, said, ("neuron", block, kind, int(src), int(dst), int(polarity)),
                       lambda: wiring.set_polarity(src, dst, polarity, sensory=(kind == "sensory")))
            if done is not None:
                self._deliver(lambda: done(said))
            return said

        return self._command(work, rerun=rerun)

    def sparsify(self, block: int, level: float, seed: int = 0, rerun: bool = True):
        """Regenerate the weight masks of one block's cell wiring at `level` (when the wiring supports it)."""
        def work(st):
            said = f"cell wiring of block {block}: weight masks regenerated at sparsity {level:g} (seed {seed})"
            wiring = self._wiring("cell", block)
            return self._edit(st, said, ("sparsity", block, "", "", float(level), int(seed)),
                              lambda: model_graph.set_sparsity(wiring, level, seed))

        return self._command(work, rerun=rerun)

    def undo(self, rerun: bool = True) -> Future:
        """Revert the latest edit action (all wirings it touched), then re-run."""
        def work(st):
            action = st.log.undo()
            self._restart_debugger(st, f"undid {action.said}")
            return f"undid: {action.said}"

        return self._command(work, rerun=rerun)

    def redo(self, rerun: bool = True) -> Future:
        def work(st):
            action = st.log.redo()
            self._restart_debugger(st, f"redid {action.said}")
            return f"redid: {action.said}"

        return self._command(work, rerun=rerun)

    def reset_edits(self, rerun: bool = True) -> Future:
        """Undo every edit action: the wirings the model was loaded with."""
        def work(st):
            n = st.log.reset()
            self._restart_debugger(st, "wirings reset")
            return f"reset: {n} edits undone, the model has its loaded wirings"

        return self._command(work, rerun=rerun)

    def edits_doc(self) -> dict:
        """The edits file (`xlstm_viz.apply_edits` applies it to a model), read on the model thread."""
        return self.on_worker(lambda: self._w.log.to_doc())

    def import_edits(self, doc, rerun: bool = True) -> Future:
        """Apply an edits document on top of the current edits; refused actions are reported, the rest apply."""
        def work(st):
            report = st.log.apply_doc(doc)
            self._restart_debugger(st, "edits imported")
            st.pending_refused = tuple(report.refused)
            return f"imported {len(report.applied)} edits" + (f", refused {len(report.refused)}" if report.refused
                                                               else "")

        return self._command(work, rerun=rerun)

    def _wiring(self, scope: str, block: int | None):
        if scope == "block":
            return self.model.block_wiring
        if scope == "cell":
            if block is None or not 0 <= block < len(self.model.cell_wirings):
                raise IndexError(f"block {block} out of range: the model has {len(self.model.cell_wirings)} blocks")
            return self.model.cell_wirings[block]
        raise ValueError(f"edit scope must be 'block' or 'cell', got {scope!r}")

    def graph(self, scope: str, block: int | None = None):
        """(names, [(src, dst, polarity)]) of a wiring, from the latest result (no call into the worker)."""
        return self.result.graphs.of(scope, block)

    # -- interventions (ablations) ------------------------------------------------------------------
    def ablate(self, probe: str, rerun: bool = True, heads=None, tokens=None, inside: bool = False):
        """Zero a cell's output (model.interventions), optionally only some heads / token positions, then re-run;
        `clear_ablations` undoes it. Bad heads or positions are refused by name (interventions.add, the run).
        inside: zero a neuron cell's state inside its recurrence at every step (cells in `INSIDE_PROBES`), so the
        other neurons and later tokens see it, not only the cell's output."""
        self.check_probe(probe)
        if tokens is not None and self.tokens is not None:
            bad = [t for t in tokens if not 0 <= int(t) < len(self.tokens)]
            if bad:
                raise ValueError(f"ablation position {bad[0]} is outside the prompt: positions are "
                                 f"0..{len(self.tokens) - 1}")

        def work(st):
            described = self.model.interventions.add(probe, "zero", heads=heads, tokens=tokens,
                                                     inside=inside).describe()
            said = f"ablation {described}: set to zero"
            self._restart_debugger(st, said)
            return said

        return self._command(work, rerun=rerun)

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
        if self._probe_names is None:  # fixed by the model's structure: read once
            self._probe_names = self.on_worker(lambda: list(self.model.probe_names()))
        return self._probe_names

    def clear_ablations(self, rerun: bool = True):
        def work(st):
            self.model.interventions.clear()
            self._restart_debugger(st, "ablations cleared")
            return "ablations cleared"

        return self._command(work, rerun=rerun)

    def ablations(self) -> list[str]:
        return list(self.result.ablations)

    # -- debugger ---------------------------------------------------------------------------------
    def _dbg(self, st: _State):
        if st.debugger is None:
            if st.tokens is None:
                raise ValueError("no prompt yet: set a prompt before debugging")
            from xlstm_viz.execution import Debugger

            import mlx.core as mx

            st.debugger = Debugger(self.model, mx.array(st.tokens[None, :].astype(np.int32)), mode="recurrent")
            for bp in st.breakpoints:  # breakpoints survive a new prompt and a reload
                st.debugger.add_breakpoint(probe=bp.get("probe"), condition=bp.get("condition"), token=bp.get("token"))
            st.breakpoints = []
        return st.debugger

    @staticmethod
    def _breakpoints(st: _State) -> list[dict]:
        if st.debugger is None:
            return [dict(bp) for bp in st.breakpoints]
        return [{"probe": bp.probe, "condition": bp.condition, "token": bp.token} for bp in st.debugger.breakpoints]

    def _restart_debugger(self, st: _State, reason: str, new_input: bool = False) -> None:
        """The model or the prompt changed: a stop point of the old run would be stale, so start again.

        Breakpoints are kept; the debugger stands before the first cell and says why.
        """
        dbg = st.debugger
        if dbg is None and st.step_event is None and not st.debugger_state:
            return
        if new_input:
            st.breakpoints = self._breakpoints(st)
            st.debugger = None
        elif dbg is not None:
            dbg.reset()  # the executor reads the edited wiring on its next step
        st.step_event = None
        st.debugger_state = debug_commands.summary(dbg, f"restarted: {reason}")

    def debug(self, action: str, **kwargs):
        """action: step | step_over | step_token | continue | reset | add_breakpoint | remove_breakpoint."""
        if self.tokens is None:
            raise ValueError("no prompt yet: set a prompt before debugging")

        def work(st):
            dbg = self._dbg(st)
            st.step_event = debug_commands.run_command(dbg, action, **kwargs)
            st.debugger_state = debug_commands.summary(dbg)
            return ""

        return self._command(work)

    # -- restore and app data -----------------------------------------------------------------------
    def set_extra(self, **data) -> Future:
        """Save app data (JSON values) with the session, in order with every other save."""
        def work(st):
            st.extra.update(data)
            return ""

        return self._command(work)

    def restore(self, saved: dict, fallback_example=(DEFAULT_PROMPT_PAIRS, 0), extra: dict | None = None) -> Future:
        """Rebuild a saved session on the model thread in one command: ablations, the baseline run with the edits it
        had, the later edits and a run, breakpoints. What cannot be applied is refused item by item (named in
        `result.refused`); the rest comes back."""
        refused: list[str] = []
        example, prompt = saved.get("example"), saved.get("prompt")
        source = None
        try:
            if example:
                text, targets, mask, pairs = self.example_batch(int(example[0]), int(example[1]))
                source = (text, targets, mask, (pairs, int(example[1])))
            elif prompt:
                source = (prompt, None, None, None)
            ids = self.parse_prompt(source[0]) if source else None
        except (ValueError, KeyError, TypeError) as exc:
            refused.append(f"saved prompt refused: {exc}")
            source = None
        if source is None:
            text, targets, mask, pairs = self.example_batch(*fallback_example)
            source, ids = (text, targets, mask, (pairs, int(fallback_example[1]))), self.parse_prompt(text)
        text, targets, mask, ex = source
        self.param.update(prompt=text, tokens=ids, targets=targets, loss_mask=mask, example=ex)
        edits = list(saved.get("edits") or [])

        def work(st):
            st.extra.update(extra or {})
            for i, a in enumerate(saved.get("ablations") or []):
                try:
                    self.check_probe(a.get("probe"))
                    self.model.interventions.add(a["probe"], a.get("kind", "zero"), value=a.get("value"),
                                                 tokens=a.get("tokens"), heads=a.get("heads"),
                                                 inside=a.get("inside", False))
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    refused.append(f"ablation {i}: {exc}")
            doc = self._saved_edits_doc(edits, refused)
            k = min(int(saved.get("baseline_edits", 0) or 0), len(doc["actions"]))
            self._apply_saved(st, doc, 0, k, refused)
            self._set_input(st, text, ids, targets, mask, ex)
            self._forward(st, new_baseline=True)
            if len(doc["actions"]) > k:
                self._apply_saved(st, doc, k, None, refused)
                self._forward(st)
            # the redo list: apply each saved undone action, then undo them all (state unchanged, redo stack rebuilt)
            redo, said = self._saved_edits_doc(list(saved.get("redo") or []), refused), []
            done = len(st.log.actions)
            self._apply_saved(st, redo, 0, None, said)
            refused.extend(f"redo list: {r}" for r in said)
            for _ in range(len(st.log.actions) - done):
                st.log.undo()
            for i, bp in enumerate(saved.get("breakpoints") or []):
                if not isinstance(bp, dict) or not (bp.get("probe") is None or isinstance(bp.get("probe"), str)):
                    refused.append(f"breakpoint {i}: expected {{probe, condition, token}}, got {bp!r}"[:200])
                    continue
                st.breakpoints.append({k: bp.get(k) for k in ("probe", "condition", "token")})
            st.pending_refused = tuple(refused)
            n = len(st.log.actions)
            return f"restored {n} saved edits" if n else ""

        return self._command(work)

    @staticmethod
    def _apply_saved(st, doc, start, stop, refused) -> None:
        refused.extend(st.log.apply_doc(doc, start, stop).refused)

    def _saved_edits_doc(self, edits: list, refused: list) -> dict:
        """The saved actions as an edits document; a format-1 file's positional tuples become actions here."""
        from xlstm_viz.model_edits import FORMAT, VERSION

        actions = []
        for i, e in enumerate(edits):
            if isinstance(e, dict):
                actions.append(e)
                continue
            try:  # format 1: (scope, block, src, dst, polarity) or ("sparsity", block, "", "", level, seed)
                actions.append(self._legacy_action(list(e)))
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                refused.append(f"saved edit {i} {e!r}: {exc}"[:300])
        return {"format": FORMAT, "version": VERSION, "actions": actions}

    def _legacy_action(self, e: list) -> dict:
        """Replay a positional edit on a scratch log and return its recorded action (then undo it)."""
        st = self._w
        n = len(st.log.actions)
        w = self._wiring("cell" if e[0] == "sparsity" else e[0], e[1])
        if e[0] == "sparsity":
            st.log.record("legacy", lambda: model_graph.set_sparsity(w, e[4], e[5]))
        else:
            st.log.record("legacy", lambda: model_graph.set_connection(w, e[2], e[3], e[4]))
        if len(st.log.actions) == n:
            return {"said": f"{e}", "edits": [], "key": e}  # a no-op edit: refused by apply_doc as empty
        doc = st.log.actions[-1].to_json()
        st.log.undo()
        st.log.undone.clear()
        return {**doc, "said": self._said_of(e), "key": e}

    @staticmethod
    def _said_of(e) -> str:
        if e[0] == "sparsity":
            return f"cell wiring of block {e[1]}: weight masks regenerated at sparsity {e[4]:g} (seed {e[5]})"
        where = "block wiring" if e[0] == "block" else f"cell wiring of block {e[1]}"
        return f"{where}: {e[2]} -> {e[3]} {STATE_NAMES.get(e[4], e[4])}"
