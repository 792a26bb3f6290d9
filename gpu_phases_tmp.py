import time
import xlstm_viz, mlx.core as mx, numpy as np
from xlstm_viz.execution.executor import Executor
from xlstm_viz.execution import trace as T, stats as St
print(mx.default_device())
m = xlstm_viz.load_demo()
ids = mx.array(np.random.default_rng(0).integers(2, m.config.vocab_size, (1, 64)))
marks = {}
def add(k, v): marks.setdefault(k, []).append(v)
orig_eval = mx.eval
state = {}
def timed_eval(*a):
    t = time.perf_counter(); state["pre"] = t; orig_eval(*a); state["post"] = time.perf_counter()
orig_table = St.stats_table
def timed_table(layout):
    fn = orig_table(layout)
    def call(*arrays):
        t = time.perf_counter(); r = fn(*arrays); add("c2 table call (graph)", time.perf_counter() - t); return r
    return call
T.stats_table = timed_table
def traced(probes=None, key="T"):
    t0 = time.perf_counter()
    r = T.Recorder(m, probes, "stats"); t1 = time.perf_counter()
    logits, _ = Executor(m).forward_observed(ids, observer=r); t2 = time.perf_counter()
    T.mx.eval = timed_eval
    s, f = r.finish(); t3 = time.perf_counter()
    T.mx.eval = orig_eval
    np.array(logits); t4 = time.perf_counter()
    if key == "T":
        add("a init", t1 - t0); add("b build", t2 - t1); add("c finish pre-eval", state["pre"] - t2)
        add("d eval", state["post"] - state["pre"]); add("g finish post-eval", t3 - state["post"]); add("h tail", t4 - t3)
    add(key + " total", t4 - t0)
def held_only():
    t0 = time.perf_counter()
    r = T.Recorder(m, None, "stats")
    logits, _ = Executor(m).forward_observed(ids, observer=r)
    outs = [a for v in r._outputs.values() for a in v] + [a for rec in r._memory.values() for v in rec.values() for a in v]
    mx.eval(logits, outs); np.array(logits)
    add("H held outputs only total", time.perf_counter() - t0)
def untraced():
    t0 = time.perf_counter(); y = m(ids)[0]; t1 = time.perf_counter(); mx.eval(y); t2 = time.perf_counter(); np.array(y); t3 = time.perf_counter()
    add("U build", t1 - t0); add("U eval", t2 - t1); add("U total", t3 - t0)
nomem = [n for n in m.probe_names() if not n.endswith(("memory", "igate"))]
for i in range(200):
    untraced(); traced(); traced(nomem, "N nomem"); held_only()
for k, v in sorted(marks.items()): print(f"{k:28s} {1000*np.median(v[20:]):.3f}")
