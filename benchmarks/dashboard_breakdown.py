"""Where a dashboard click's latency goes: server time vs browser time, message sizes, and the browser's CPU profile.

One `xlstm-viz serve` process, one chromium page (playwright + Debian chromium) on the Diff tab, toggling an ablation
("Ablate" / "Clear ablations", each a model re-run) --clicks times. For each click the page itself records (its own
clock, `performance.now()`):
  - click -> the event sent on the websocket (browser input handling),
  - sent -> the result's message back (the largest: server event dispatch, model re-run, result, document diff),
  - that message -> the new text on screen (browser: BokehJS applying the patch, layout, paint),
  - the reply's websocket frames and bytes.
Then a CDP `Profiler` CPU profile over --profile-clicks more clicks, its top functions by self time, and the
share of the profile in layout / rendering / message handling.

Run: PYTHONPATH=. python benchmarks/dashboard_breakdown.py [--clicks 20] [--profile-clicks 6] [--tab Diff]
     [--py-spy FILE (server profile; needs py-spy)] [--root OTHER_CHECKOUT (its app instead, for A/B)]
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
from dashboard_load import start_server  # noqa: E402  (the same served app, port and session folder as the load test)
# Every websocket message, both ways, with the page's clock and its size (binary buffers included).
WS_HOOK = """
window.__ws = [];
const Orig = window.WebSocket;
window.WebSocket = function (...a) {
  const ws = new Orig(...a);
  ws.addEventListener('message', (e) => {
    const n = typeof e.data === 'string' ? e.data.length : (e.data.byteLength || e.data.size || 0);
    const head = typeof e.data === 'string' ? e.data.slice(0, window.__full ? 100000 : 120) : '';
    window.__ws.push({dir: 'in', t: performance.now(), n, head});
  });
  const send = ws.send.bind(ws);
  ws.send = (d) => {
    const n = typeof d === 'string' ? d.length : (d.byteLength || d.size || 0);
    window.__ws.push({dir: 'out', t: performance.now(), n, head: typeof d === 'string' ? d.slice(0, 120) : ''});
    return send(d);
  };
  return ws;
};
window.WebSocket.prototype = Orig.prototype;
Object.assign(window.WebSocket, Orig);
document.addEventListener('pointerdown', () => { window.__click = performance.now(); }, true);
"""


def med(xs):
    return statistics.median(xs) if xs else float("nan")


async def click_and_wait(page, button, pattern):
    await page.evaluate("window.__ws = []")
    await page.get_by_role("button", name=button, exact=True).click()
    await page.get_by_text(pattern).first.wait_for(timeout=120_000)
    shown = await page.evaluate("performance.now()")
    click = await page.evaluate("window.__click")
    ws = await page.evaluate("window.__ws")
    out = [m for m in ws if m["dir"] == "out"]
    inc = [m for m in ws if m["dir"] == "in" and m["t"] >= (out[0]["t"] if out else click)]
    if not out or not inc:
        return None
    big = max(inc, key=lambda m: m["n"])  # the result: one held message with every view's update
    return {"total": shown - click, "input": out[0]["t"] - click, "server": big["t"] - out[0]["t"],
            "browser": shown - big["t"], "result_kB": big["n"] / 1024, "msgs_in": len(inc),
            "bytes_in": sum(m["n"] for m in inc)}


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


async def main_async(args):
    from playwright.async_api import async_playwright

    root = Path(args.root).resolve() if args.root else ROOT  # another checkout's app, for A/B in one session
    server, url, cache, err = start_server("xlstm-viz-breakdown-", root)
    rows = []
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                              args=["--no-sandbox", "--disable-background-networking"])
            ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
            page = await ctx.new_page()
            await page.add_init_script(WS_HOOK)
            t0 = time.perf_counter()
            await page.goto(f"{url}/?session=breakdown", timeout=180_000)
            await page.wait_for_selector(".bk-Canvas", timeout=180_000)
            await page.get_by_text("ran ", exact=False).first.wait_for(timeout=180_000)
            print(f"page open -> first run shown: {time.perf_counter() - t0:.1f} s")
            await page.get_by_text(args.tab, exact=True).click()
            box = page.get_by_label("cell to ablate")
            await box.fill("blocks.0.mlstm.igate")
            await box.press("Enter")
            await page.wait_for_timeout(1000)
            steps = [("Ablate (zero output)", re.compile(r"^ablations: #\d+ zero ")),
                     ("Clear ablations", re.compile(r"^ablations: none$"))]
            spy = None
            if args.py_spy:  # the server's own profile over the timed clicks (all threads, wall clock)
                spy = subprocess.Popen(["py-spy", "record", "--format", "raw", "--threads", "-r", "100",
                                        "-o", args.py_spy, "-p", str(server.pid)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
                await asyncio.sleep(1.0)
            for i in range(args.clicks):
                r = await click_and_wait(page, *steps[i % 2])
                if r:
                    rows.append(r)
            if spy is not None:
                spy.send_signal(2)
                spy.wait(timeout=60)
            cdp = await ctx.new_cdp_session(page)
            trace_events, done = [], asyncio.Event()
            cdp.on("Tracing.dataCollected", lambda e: trace_events.extend(e["value"]))
            cdp.on("Tracing.tracingComplete", lambda e: done.set())
            await cdp.send("Tracing.start", {"categories": "devtools.timeline,v8,blink", "transferMode": "ReportEvents"})
            trace_rows = []
            for i in range(args.profile_clicks):
                r = await click_and_wait(page, *steps[i % 2])
                if r:
                    trace_rows.append(r)
            await cdp.send("Tracing.end")
            await asyncio.wait_for(done.wait(), 60)
            await cdp.send("Profiler.enable")
            await cdp.send("Profiler.setSamplingInterval", {"interval": 200})
            await cdp.send("Profiler.start")
            prof_rows = []
            for i in range(args.profile_clicks):
                r = await click_and_wait(page, *steps[i % 2])
                if r:
                    prof_rows.append(r)
            prof = (await cdp.send("Profiler.stop"))["profile"]
            await browser.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
        err.close()
    print(f"{len(rows)} clicks on the {args.tab} tab, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for k in ("total", "input", "server", "browser"):
        xs = [r[k] for r in rows]
        print(f"  {k:<11} median {med(xs):7.0f} ms   max {max(xs):7.0f} ms")
    print(f"  reply: median {med([r['bytes_in'] for r in rows]) / 1024:.1f} kB in {med([r['msgs_in'] for r in rows]):.0f} "
          f"websocket frames, the result's message {med([r['result_kB'] for r in rows]):.1f} kB")
    if args.py_spy:
        threads, top = spy_summary(args.py_spy)
        n = len(rows)
        print(f"server CPU (py-spy, active samples) per click: " + ", ".join(
            f"{t} {ms / n:.0f} ms" for t, ms in sorted(threads.items(), key=lambda x: -x[1])))
        for f, ms in top:
            print(f"  {ms / n:8.1f} ms/click  {f}")
    wall = sum(r["total"] for r in trace_rows)
    print(f"browser main thread (chromium trace) over {len(trace_rows)} clicks, {wall:.0f} ms click-to-shown; "
          "ms per click by event (nested events counted in each):")
    for name, ms in trace_summary(trace_events):
        print(f"  {ms / max(1, len(trace_rows)):8.1f} ms  {name}")
    total, top, incl = profile_summary(prof)
    wall = sum(r["total"] for r in prof_rows)
    n = max(1, len(prof_rows))
    print(f"browser CPU profile over {len(prof_rows)} clicks: {total:.0f} ms sampled of {wall:.0f} ms click-to-shown; "
          "per click, by self time:")
    for name, ms in top:
        print(f"  {ms / n:8.1f} ms  {100 * ms / total:5.1f}%  {name}")
    print("  by inclusive time:")
    for name, ms in incl:
        print(f"  {ms / n:8.1f} ms  {100 * ms / total:5.1f}%  {name}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--profile-clicks", type=int, default=6)
    ap.add_argument("--tab", default="Diff")
    ap.add_argument("--root", help="serve the app of this checkout instead (e.g. the main branch, for A/B)")
    ap.add_argument("--py-spy", metavar="FILE", help="record the server with py-spy (collapsed stacks) to FILE")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
