"""Where a dashboard click's latency goes: server time vs browser time, what the browser does per click, and A/B.

One `xlstm-viz serve` process per app, one headless chromium (playwright + Debian chromium, software rendering) per
app, one page at 1280x800 on the Diff tab, toggling an ablation ("Ablate" / "Clear ablations", each a model re-run).
Per click, all measured in or next to the page:
  - the page's own clock (`performance.now()`): click -> event sent on the websocket (input), sent -> the result's
    message back (server: event dispatch, model re-run, document diff), that message -> the new text on screen
    (browser), click -> shown (total). "Shown": an in-page watcher checks the target pane's text when its DOM changes
    (a MutationObserver; before session 8 in every frame, and the frames it asked for, ~2-4 ms of renderer CPU each
    on this app, were counted here) and stamps the end of the frame that first carries it (a task queued from that
    frame's requestAnimationFrame runs after the frame's style, layout and paint). Playwright's own text search is not used for the wait: its polling
    is work in the page (the load test's `get_by_text` costs ~100 ms of renderer CPU per click, CPU profile).
  - CPU per click, from just before the click until the page has been quiet for --settle ms: the renderer's main
    thread (CDP Performance.getMetrics: TaskDuration, and its Script / Layout / RecalcStyle shares, layout and style
    recalculation counts), the renderer process and the whole browser (CDP SystemInfo.getProcessInfo cpuTime: raster
    and compositing threads included), and the server process (/proc utime + stime).
  - BokehJS, instrumented in the page: whole-layout passes (LayoutDOMView.compute_layout on a layout root: which
    root, how long), figure paints (PlotView paints: which figure, how long), and the document events the server sent
    (model type and attribute).
Then, for the first app, chromium's trace of --profile-clicks clicks (main-thread time per event name) and a CDP CPU
profile of --profile-clicks more (top functions).

--compare OTHER_CHECKOUT serves that checkout's app as well (two servers, two browsers) and alternates rounds of
--round clicks between the two, so that both see the same machine load; figures are printed per app and as ratios.

--action step clicks the debugger's Step on the Debugger tab instead (the load test's odd sessions); --events also
prints the document events the page sends back (auto-ranged ranges, figure widths: work the server must take in).

Run: PYTHONPATH=. python benchmarks/dashboard_breakdown.py [--clicks 12] [--profile-clicks 6] [--action toggle|step]
     [--compare /work/main] [--root OTHER_CHECKOUT (its app alone)] [--py-spy FILE (server profile; needs py-spy)]
     [--events (print each click's document events)]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from dashboard_load import WATCH_HOOK, start_server  # noqa: E402  (the same served app, port, session folder and
# shown-text watcher as the load test)

# Every websocket message, both ways, with the page's clock and its size (binary buffers included); the document
# events of incoming messages (kind, model id, attribute).
WS_HOOK = """
window.__ws = [];
window.__ev = [];
window.__evOut = [];
const Orig = window.WebSocket;
window.WebSocket = function (...a) {
  const ws = new Orig(...a);
  ws.addEventListener('message', (e) => {
    const n = typeof e.data === 'string' ? e.data.length : (e.data.byteLength || e.data.size || 0);
    window.__ws.push({dir: 'in', t: performance.now(), n});
    if (typeof e.data === 'string' && e.data.startsWith('{"events"')) {
      try {
        for (const ev of JSON.parse(e.data).events || [])
          window.__ev.push([ev.kind, (ev.model || {}).id || '', ev.attr || '']);
      } catch (err) {}
    }
  });
  const send = ws.send.bind(ws);
  ws.send = (d) => {
    const n = typeof d === 'string' ? d.length : (d.byteLength || d.size || 0);
    window.__ws.push({dir: 'out', t: performance.now(), n});
    if (typeof d === 'string' && d.startsWith('{"events"')) {  // what the page sends back (--events prints it)
      try {
        for (const ev of JSON.parse(d).events || [])
          window.__evOut.push([ev.kind, (ev.model || {}).id || '', ev.attr || ev.name || (ev.event_name || '')]);
      } catch (err) {}
    }
    return send(d);
  };
  return ws;
};
window.WebSocket.prototype = Orig.prototype;
Object.assign(window.WebSocket, Orig);
document.addEventListener('pointerdown', () => { window.__click = performance.now(); }, true);
"""

# BokehJS instrumentation, added once Bokeh has loaded: whole-layout passes and figure paints, and a watcher that
# resolves when a Markdown/HTML pane's text (found by its prefix) matches a pattern on screen.
BOKEH_HOOK = r"""
(() => {
  if (window.__instr) return;
  window.__instr = true;
  window.__lay = [];
  window.__paints = [];
  const {LayoutDOMView} = Bokeh.require("models/layouts/layout_dom");
  const {PlotView} = Bokeh.require("models/plots/plot_canvas");
  const layout = LayoutDOMView.prototype.compute_layout;
  LayoutDOMView.prototype.compute_layout = function () {
    if (this.parent instanceof LayoutDOMView) return layout.call(this);  // goes up to the root
    const t0 = performance.now();
    const r = layout.call(this);
    window.__lay.push({t: t0, ms: performance.now() - t0, root: this.model.type});
    return r;
  };
  // which figure's side panel (axis, colour bar, title) changed size and so asked for a layout
  window.__sized = [];
  const invalidate = PlotView.prototype._invalidate_layout_if_needed;
  PlotView.prototype._invalidate_layout_if_needed = function () {
    if (!this._needs_layout) {
      for (const panel of this.model.side_panels) {
        const view = this.renderer_views.get(panel);
        const layout = view && view.layout;
        if (layout != null && layout.panel != null && layout._content_size != null) {  // a side panel's layout
          const {width, height} = layout._content_size();
          const changed = layout.panel.is_horizontal ? layout.bbox.height != height : layout.bbox.width != width;
          if (changed) {
            const title = (this.model.title && this.model.title.text) || this.model.id;
            window.__sized.push(title.slice(0, 24) + ': ' + panel.type + ' (' + layout.panel.side + ')');
          }
        }
      }
    }
    return invalidate.call(this);
  };
  const paint = PlotView.prototype._actual_paint;
  PlotView.prototype._actual_paint = function () {
    const t0 = performance.now();
    const r = paint.call(this);
    const title = (this.model.title && this.model.title.text) || this.model.id;
    window.__paints.push({t: t0, ms: performance.now() - t0, plot: title.slice(0, 32)});
    return r;
  };
  // the shown-text watcher (window.__waitText, __viewCount) is the load test's WATCH_HOOK, added after this
  window.__modelType = (id) => { const m = Bokeh.documents[0].get_model_by_id(id); return m ? m.type : '?'; };
})();
"""
STEPS = [("Ablate (zero output)", "ablations: ", r"^ablations: #\d+ zero "),
         ("Clear ablations", "ablations: ", r"^ablations: none$")]
# --action step: the debugger's Step on the Debugger tab, shown when the status says one more cell has run
# (the load test's odd sessions); the pass restarts (Reset) before it finishes
STEP_CLICK = ("Step", "stopped (", r"^stopped \(\w+\), {n} cells run")
METRICS = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration", "LayoutCount",
           "RecalcStyleCount")


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else float("nan")


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class App:
    """One served checkout, its browser and its page on the chosen tab."""

    def __init__(self, name: str, root: Path, action: str = "toggle"):
        self.name, self.root, self.action = name, root, action
        self.steps = 0
        self.rows: list[dict] = []
        self.events: collections.Counter = collections.Counter()

    async def open(self, pw):
        self.server, self.url, self.cache, self.err = start_server(f"xlstm-viz-breakdown-{self.name}-", self.root)
        self.browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                                args=["--no-sandbox", "--disable-background-networking"])
        self.ctx = await self.browser.new_context(viewport={"width": 1280, "height": 800})
        self.page = await self.ctx.new_page()
        await self.page.add_init_script(WS_HOOK)
        t0 = time.perf_counter()
        await self.page.goto(f"{self.url}/?session=breakdown", timeout=180_000)
        await self.page.wait_for_selector(".bk-Canvas", timeout=180_000)
        await self.page.get_by_text("ran ", exact=False).first.wait_for(timeout=180_000)
        self.open_s = time.perf_counter() - t0
        if self.action == "step":
            await self.page.get_by_text("Debugger", exact=True).click()
        else:
            await self.page.get_by_text("Diff", exact=True).click()
            box = self.page.get_by_label("cell to ablate")
            await box.fill("blocks.0.mlstm.igate")
            await box.press("Enter")
        await self.page.wait_for_timeout(1000)
        await self.page.evaluate(BOKEH_HOOK)
        await self.page.evaluate(WATCH_HOOK)
        self.views = await self.page.evaluate("window.__viewCount()")
        self.cdp = await self.ctx.new_cdp_session(self.page)
        await self.cdp.send("Performance.enable", {"timeDomain": "threadTicks"})
        self.bcdp = await self.browser.new_browser_cdp_session()
        self.types: dict[str, str] = {}

    async def metrics(self):
        m = {x["name"]: x["value"] for x in (await self.cdp.send("Performance.getMetrics"))["metrics"]}
        procs = (await self.bcdp.send("SystemInfo.getProcessInfo"))["processInfo"]
        m["renderer_cpu"] = sum(p["cpuTime"] for p in procs if p["type"] == "renderer")
        m["browser_cpu"] = sum(p["cpuTime"] for p in procs)
        m["server_cpu"] = proc_cpu_s(self.server.pid)
        return m

    async def click(self, i: int, settle_ms: float, print_events: bool = False):
        if self.action == "step":
            if self.steps >= 40:  # stay well inside one pass: Reset (not timed) and step again
                await self.page.get_by_role("button", name="Reset", exact=True).click()
                await self.page.evaluate("([p, r]) => window.__waitText(p, r, 120000)",
                                         ["^" + re.escape(STEP_CLICK[1]), r"^stopped \(\w+\), 0 cells run"])
                self.steps = 0
            self.steps += 1
            button, prefix, pattern = STEP_CLICK[0], STEP_CLICK[1], STEP_CLICK[2].format(n=self.steps)
        else:
            button, prefix, pattern = STEPS[i % 2]
        await self.page.evaluate("window.__ws = []; window.__ev = []; window.__evOut = []; window.__lay = []; "
                                 "window.__paints = []; window.__sized = []")
        before = await self.metrics()
        await self.page.get_by_role("button", name=button, exact=True).click()
        shown, _ = await self.page.evaluate("([p, r]) => window.__waitText(p, r, 120000)",
                                            ["^" + re.escape(prefix), pattern])
        # quiet: no websocket message, layout or paint for settle_ms (the page's trailing work counts too)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            last = await self.page.evaluate(
                "Math.max(0, ...window.__ws.map(m => m.t), ...window.__lay.map(l => l.t + l.ms), "
                "...window.__paints.map(p => p.t + p.ms))")
            now = await self.page.evaluate("performance.now()")
            if now - last >= settle_ms:
                break
            await asyncio.sleep(settle_ms / 4000)
        after = await self.metrics()
        click = await self.page.evaluate("window.__click")
        ws, lay, paints, ev, sized = await self.page.evaluate(
            "[window.__ws, window.__lay, window.__paints, window.__ev, window.__sized]")
        out = [m for m in ws if m["dir"] == "out" and m["t"] >= click]
        inc = [m for m in ws if m["dir"] == "in" and m["t"] >= (out[0]["t"] if out else click)]
        if not out or not inc:
            return None
        big = max(inc, key=lambda m: m["n"])  # the result: one held message with every view's update
        for kind, mid, attr in ev:
            if mid and mid not in self.types:
                self.types[mid] = await self.page.evaluate("(id) => window.__modelType(id)", mid)
        names = [f"{kind} {self.types.get(mid, '-')}.{attr}" if attr else f"{kind} {self.types.get(mid, '-')}"
                 for kind, mid, attr in ev]
        self.events.update(names)
        if print_events:
            print(f"  [{self.name} click {i}] " + "; ".join(names))
            sent = await self.page.evaluate("window.__evOut")
            for kind, mid, attr in sent:
                if mid and mid not in self.types:
                    self.types[mid] = await self.page.evaluate("(id) => window.__modelType(id)", mid)
            print(f"  [{self.name} click {i}, sent by the page] " + "; ".join(
                f"{kind} {self.types.get(mid, '-')}.{attr}" for kind, mid, attr in sent))
        d = {k: (after.get(k, 0) - before.get(k, 0)) for k in set(after) | set(before)}
        r = {"total": shown - click, "input": out[0]["t"] - click, "server": big["t"] - out[0]["t"],
             "browser": shown - big["t"], "bytes_in": sum(m["n"] for m in inc), "msgs_in": len(inc),
             "main_ms": 1000 * d.get("TaskDuration", 0), "script_ms": 1000 * d.get("ScriptDuration", 0),
             "layout_ms": 1000 * d.get("LayoutDuration", 0), "style_ms": 1000 * d.get("RecalcStyleDuration", 0),
             "layouts": d.get("LayoutCount", 0), "styles": d.get("RecalcStyleCount", 0),
             "renderer_ms": 1000 * d["renderer_cpu"], "browser_ms": 1000 * d["browser_cpu"],
             "server_ms": 1000 * d["server_cpu"],
             "root_layouts": len(lay), "root_layout_ms": sum(x["ms"] for x in lay),
             "roots": collections.Counter(x["root"] for x in lay),
             "paints": len(paints), "paint_ms": sum(x["ms"] for x in paints),
             "paints_before_shown": sum(1 for x in paints if x["t"] < shown),
             "figures": collections.Counter(x["plot"] for x in paints), "events": len(ev),
             "sized": collections.Counter(sized)}
        self.rows.append(r)
        return r

    async def close(self):
        await self.browser.close()
        self.server.terminate()
        self.server.wait(timeout=60)
        self.err.close()


def profile_summary(profile, top=25):
    """(sampled ms, top functions by self time, top functions by inclusive time) of a CDP CPU profile."""
    nodes = {n["id"]: n for n in profile["nodes"]}
    parent = {c: n["id"] for n in profile["nodes"] for c in n.get("children", [])}
    dt = collections.Counter()
    for sid, d in zip(profile.get("samples", []), profile.get("timeDeltas", [])):
        dt[sid] += d / 1000.0

    def name(node):
        cf = node["callFrame"]
        url = cf.get("url", "").rsplit("/", 1)[-1].split("?")[0]
        return f"{cf.get('functionName') or '(anon)'} [{url}:{cf.get('lineNumber', -1)}:{cf.get('columnNumber', -1)}]"

    self_t, incl = collections.Counter(), collections.Counter()
    for sid, ms in dt.items():
        self_t[name(nodes[sid])] += ms
        seen, n = set(), sid
        while n is not None:
            key = name(nodes[n])
            if key not in seen:
                incl[key] += ms
                seen.add(key)
            n = parent.get(n)
    return sum(self_t.values()), self_t.most_common(top), incl.most_common(top + 15)


TRACE_NAMES = ("RunTask", "FunctionCall", "EvaluateScript", "TimerFire", "FireAnimationFrame", "EventDispatch",
               "UpdateLayoutTree", "Layout", "PrePaint", "Paint", "Layerize", "Commit", "V8.GC_SCAVENGER",
               "MajorGC", "MinorGC", "v8.run", "ParseHTML", "HitTest", "IntersectionObserverController::computeIntersections")


def trace_summary(events):
    """Total duration per event name on the page's main thread (CrRendererMain)."""
    main = {(e["pid"], e["tid"]) for e in events if e.get("name") == "thread_name"
            and e.get("args", {}).get("name") == "CrRendererMain"}
    tot = collections.Counter()
    for e in events:
        if (e.get("pid"), e.get("tid")) in main and e.get("ph") == "X" and "dur" in e:
            tot[e["name"]] += e["dur"] / 1000.0
    return [(n, tot[n]) for n in TRACE_NAMES if n in tot] + [
        (n, ms) for n, ms in tot.most_common(12) if n not in TRACE_NAMES]


def spy_summary(path, rate=100, top=25):
    """Active (non-idle) samples of py-spy's collapsed stacks: per thread, and the main thread's functions by
    inclusive time."""
    per_thread, incl = collections.Counter(), collections.Counter()
    for line in Path(path).read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        frames = stack.split(";")
        thread = frames[0].split(":", 1)[-1].strip() if ":" in frames[0] else frames[0]
        per_thread[thread] += int(n)
        if "MainThread" in frames[0]:
            for f in set(f.split(" (")[0] + " (" + f.rsplit("/", 1)[-1].split(":")[0] for f in frames[1:]):
                incl[f] += int(n)
    return ({t: n * 1000 / rate for t, n in per_thread.items()},
            [(f, n * 1000 / rate) for f, n in incl.most_common(top)])


async def trace_and_profile(app: App, n: int, settle_ms: float):
    cdp = app.cdp
    trace_events, done = [], asyncio.Event()
    cdp.on("Tracing.dataCollected", lambda e: trace_events.extend(e["value"]))
    cdp.on("Tracing.tracingComplete", lambda e: done.set())
    await cdp.send("Tracing.start", {"categories": "devtools.timeline,v8,blink", "transferMode": "ReportEvents"})
    keep = len(app.rows)
    for i in range(n):
        await app.click(i, settle_ms)
    await cdp.send("Tracing.end")
    await asyncio.wait_for(done.wait(), 60)
    traced = app.rows[keep:]
    await cdp.send("Profiler.enable")
    await cdp.send("Profiler.setSamplingInterval", {"interval": 200})
    await cdp.send("Profiler.start")
    for i in range(n):
        await app.click(i, settle_ms)
    prof = (await cdp.send("Profiler.stop"))["profile"]
    profiled = app.rows[keep + len(traced):]
    del app.rows[keep:]  # traced / profiled clicks are slower: not in the timed figures
    return trace_events, traced, prof, profiled


KEYS = [("total", "click -> shown"), ("input", "  click -> sent"), ("server", "  sent -> result message"),
        ("browser", "  result message -> shown"), ("main_ms", "renderer main thread busy"),
        ("script_ms", "  of it script"), ("style_ms", "  of it style recalculation"), ("layout_ms", "  of it layout"),
        ("renderer_ms", "renderer process CPU"), ("browser_ms", "browser CPU, all processes"),
        ("server_ms", "server process CPU"), ("root_layout_ms", "BokehJS whole-layout passes"),
        ("paint_ms", "BokehJS figure paints")]


def report(apps: list[App], load_before: float):
    print(f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores")
    for app in apps:
        rows = app.rows
        print(f"\n[{app.name}] {app.root}: page open -> first run shown {app.open_s:.1f} s, {app.views} BokehJS views; "
              f"{len(rows)} clicks ({app.action}) on the {'Debugger' if app.action == 'step' else 'Diff'} tab (median / p95 / max, ms per click)")
        for k, label in KEYS:
            xs = [r[k] for r in rows]
            print(f"  {label:<34} {med(xs):7.0f} {pct(xs, 95):7.0f} {max(xs):7.0f}")
        for k, label in (("layouts", "chromium layouts"), ("styles", "chromium style recalculations"),
                         ("root_layouts", "BokehJS whole-layout passes"), ("paints", "BokehJS figure paints"),
                         ("paints_before_shown", "  of them before shown"), ("events", "document events received"),
                         ("msgs_in", "websocket frames received")):
            print(f"  {label:<34} {med([r[k] for r in rows]):7.0f} (median count per click)")
        print(f"  bytes received: median {med([r['bytes_in'] for r in rows]) / 1024:.1f} kB per click")
        roots = sum((r["roots"] for r in rows), collections.Counter())
        figs = sum((r["figures"] for r in rows), collections.Counter())
        n = max(1, len(rows))
        print("  whole-layout passes per click by layout root: " +
              ", ".join(f"{k} {v / n:.1f}" for k, v in roots.most_common()))
        print("  figure paints per click: " + ", ".join(f"{k!r} {v / n:.1f}" for k, v in figs.most_common()))
        sized = sum((r["sized"] for r in rows), collections.Counter())
        print("  side panels that changed size (a figure layout each), per click: " +
              (", ".join(f"{k!r} {v / n:.1f}" for k, v in sized.most_common()) or "none"))
        print("  document events per click: " + ", ".join(f"{k} {v / n:.1f}" for k, v in app.events.most_common()))
    if len(apps) == 2:
        a, b = apps
        print(f"\nratios {a.name} / {b.name} of the medians (>1: {b.name} is faster / cheaper):")
        for k, label in KEYS:
            mb = med([r[k] for r in b.rows])
            ma = med([r[k] for r in a.rows])
            print(f"  {label:<34} {ma / mb if mb else float('nan'):6.2f}x")
        for q in (50, 95):
            pa, pb = pct([r["total"] for r in a.rows], q), pct([r["total"] for r in b.rows], q)
            print(f"  click -> shown p{q}: {pa:.0f} -> {pb:.0f} ms ({pa / pb:.2f}x)")


async def main_async(args):
    from playwright.async_api import async_playwright

    if args.compare:
        apps = [App("A", Path(args.compare).resolve(), args.action), App("B", ROOT, args.action)]
    else:
        apps = [App("app", Path(args.root).resolve() if args.root else ROOT, args.action)]
    load_before = os.getloadavg()[0]
    try:
        async with async_playwright() as pw:
            for app in apps:  # one at a time: opening is not what is measured
                await app.open(pw)
            spy = None
            if args.py_spy:  # the (first) server's own profile over the timed clicks (all threads, wall clock)
                spy = subprocess.Popen(["py-spy", "record", "--format", "raw", "--threads", "-r", "100",
                                        "-o", args.py_spy, "-p", str(apps[0].server.pid)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
                await asyncio.sleep(1.0)
            done = 0
            while done < args.clicks:  # alternating rounds: both apps see the same machine load
                k = min(args.round, args.clicks - done)
                for app in apps:
                    for i in range(done, done + k):
                        await app.click(i, args.settle, args.events)
                done += k
            if spy is not None:
                spy.send_signal(2)
                spy.wait(timeout=60)
            profiles = []
            if args.profile_clicks:
                for app in apps:
                    profiles.append((app, *await trace_and_profile(app, args.profile_clicks, args.settle)))
    finally:
        for app in apps:
            if hasattr(app, "server"):
                await app.close()
    report(apps, load_before)
    if args.py_spy:
        threads, top = spy_summary(args.py_spy)
        n = len(apps[0].rows)
        print(f"\n[{apps[0].name}] server CPU (py-spy, active samples) per click: " + ", ".join(
            f"{t} {ms / n:.0f} ms" for t, ms in sorted(threads.items(), key=lambda x: -x[1])))
        for f, ms in top:
            print(f"  {ms / n:8.1f} ms/click  {f}")
    for app, trace_events, traced, prof, profiled in profiles:
        wall = sum(r["total"] for r in traced)
        print(f"\n[{app.name}] renderer main thread (chromium trace) over {len(traced)} clicks, {wall:.0f} ms "
              "click-to-shown; ms per click by event (nested events counted in each):")
        for name, ms in trace_summary(trace_events):
            print(f"  {ms / max(1, len(traced)):8.1f} ms  {name}")
        total, top, incl = profile_summary(prof)
        n = max(1, len(profiled))
        print(f"[{app.name}] renderer CPU profile over {len(profiled)} clicks (to quiet): {total:.0f} ms sampled; "
              "per click, by self time:")
        for name, ms in top:
            print(f"  {ms / n:8.1f} ms  {100 * ms / total:5.1f}%  {name}")
        print("  by inclusive time:")
        for name, ms in incl:
            print(f"  {ms / n:8.1f} ms  {100 * ms / total:5.1f}%  {name}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=12, help="timed clicks per app")
    ap.add_argument("--round", type=int, default=4, help="clicks per app per round with --compare")
    ap.add_argument("--profile-clicks", type=int, default=6, help="clicks traced and clicks profiled per app (0: none)")
    ap.add_argument("--settle", type=float, default=400, help="ms of quiet in the page that ends a click")
    ap.add_argument("--root", help="serve the app of this checkout instead (e.g. the main branch)")
    ap.add_argument("--compare", metavar="OTHER_CHECKOUT",
                    help="A/B: serve this checkout's app (A) and this one's (B), alternating rounds of clicks")
    ap.add_argument("--py-spy", metavar="FILE", help="record the (first) server with py-spy (collapsed stacks)")
    ap.add_argument("--events", action="store_true", help="print each click's document events")
    ap.add_argument("--action", choices=("toggle", "step"), default="toggle",
                    help="toggle: Ablate / Clear on the Diff tab; step: the debugger's Step on the Debugger tab")
    args = ap.parse_args()
    if args.root and args.compare:
        ap.error("--root and --compare: pick one (--compare OTHER serves OTHER and this checkout)")
    if args.clicks < 1 or args.round < 1 or args.profile_clicks < 0 or args.settle <= 0:
        ap.error("--clicks and --round must be at least 1, --profile-clicks at least 0, --settle positive")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
