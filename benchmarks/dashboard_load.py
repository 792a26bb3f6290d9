"""Load test: concurrent browser sessions against one `xlstm-viz serve` process (localhost only, bounded in time).

Phases, each against the same server on 127.0.0.1:
1. one session alone, toggling (Diff tab: "Ablate" then "Clear ablations", each a model re-run) for --solo seconds;
2. --sessions sessions at once for --seconds: even ones toggle as above, odd ones press the debugger's "Step";
3. the same, plus one more session that re-runs a --long-token prompt ("Run prompt") over and over.

Latency = from the click to the page showing the new text (the ablation list, the debugger's status), playwright +
Debian chromium. "Shown" is decided in the page (WATCH_HOOK), stamped after the frame that first carries the text:
checked when the pane's DOM changes (a MutationObserver, `--wait page`, since session 8) or in every animation frame
while waiting (`--wait frames`, sessions 6-7: the frames it asks for cost the waiting pages' renderers ~0.2 CPU-s a
second each, see WATCH_HOOK). Playwright's own text waits (`--wait playwright`, the figures before
session 6) poll at 0, 20, 70, 170, 270 ms and then every 500 ms, each poll a search of the whole document (~15-25 ms
of renderer CPU with ~1,700 BokehJS views): a result shown at 280 ms was read at ~770 ms, and the polls of eight
pages were part of the CPU the benchmark measured. Also reported: server errors (tracebacks on its stderr,
console errors in the pages), state shared between sessions (a page whose ablation list shows another session's
cell; a saved session file naming another session's cell), and the server's RSS growth per open session.
Targets on the demo (issue 17): p95 < 300 ms alone, < 1 s with eight; < 50 MB per session.

CPU per click, by part (from /proc, every phase): the server's IOLoop main thread, its model threads (named
`xv-model-*` at the OS level), its other (native MLX/BLAS) threads, each kind of chromium process, the playwright
driver and this client. On this 2-core machine the browser side is most of it (chromium's renderers ~0.3-0.4 s of
CPU per click alone, ~1.6-1.9 s per click with eight pages), so the eight-session latency here is mostly the
benchmark's own browsers competing with the server for two cores; the breakdown says how much.

Think time (`--think S ...`): the zero-think-time phases (every client clicks again as soon as it sees a result, a
closed loop) always run and are reported first; then the same phases run again with S seconds between a result
showing and the next click, per session, because a real user reads a result before clicking again: a closed loop of
eight clients on two cores measures a saturated machine, not eight people. Latency is still click -> new text shown.
`--browsers shared` (default) puts every page in one chromium process (one GPU/compositor process for all);
`--browsers each` launches one chromium per session, as eight users on eight machines would have.

Run: PYTHONPATH=. python benchmarks/dashboard_load.py [--sessions 8] [--seconds 60] [--solo 20] [--long 2000]
     [--think 1.0] [--browsers shared|each] [--wait page|frames|playwright] [--root OTHER_CHECKOUT] [--py-spy FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = """
import sys
from xlstm_viz.dashboard.app import serve
serve(port=int(sys.argv[1]), address="127.0.0.1", show=False)
"""
# Added once BokehJS has loaded. __waitText(prefix, pattern, timeout) resolves with [page time, text] once a pane
# whose text matches `prefix` (a regex) shows text matching `pattern`, stamped by a task queued from the first
# animation frame that carries it (it runs after that frame's style, layout and paint). The pane is found by a walk of
# BokehJS's views and kept while it stays in the document. __click is the page time of the last pointerdown.
# window.__watchMode picks how the text is checked:
#  - "observer" (--wait page, the default since session 8): a MutationObserver on the pane's shadow root, so the
#    check runs when the pane's DOM changes, and one animation frame is asked for only then. A safety check every
#    100 ms (a timer: no frame) re-finds a pane that was replaced; window.__watchLate counts the results it, not the
#    observer, saw first (each could read up to 100 ms late; the report prints the count).
#  - "frames" (--wait frames, sessions 6-7): the text checked in every animation frame while waiting. Asking for
#    a frame 60 times a second makes chromium produce them: ~140 ms of renderer CPU per second for a waiting page of
#    this app with nothing changed, ~210 ms with the check (measured, one page alone), and with eight pages each
#    waiting ~1 s per click that was a large part of the renderer CPU per click the load test reported.
WATCH_HOOK = r"""
(() => {
  if (window.__watch) return;
  window.__watch = true;
  window.__watchLate = 0;
  document.addEventListener('pointerdown', () => { window.__click = performance.now(); }, true);
  const views = () => {
    const out = [];
    const walk = (v) => { out.push(v); for (const c of (v.children_views ? v.children_views() : [])) walk(c); };
    for (const v of Bokeh.index) walk(v);
    return out;
  };
  window.__viewCount = () => views().length;
  const targets = new Map();
  const text = (v) => (v && v.container && v.container.isConnected) ? v.container.textContent.trim() : null;
  const find = (prefix, pre) => {
    let target = targets.get(prefix);
    if (target == null || text(target) == null || !pre.test(text(target))) {
      target = views().find((v) => pre.test(text(v) || '')) || null;
      targets.set(prefix, target);
    }
    return target;
  };
  window.__waitText = (prefix, pattern, timeout) => new Promise((resolve, reject) => {
    const pre = new RegExp(prefix), re = new RegExp(pattern);
    const t0 = performance.now();
    if (window.__watchMode === 'frames') {
      const tick = () => {
        const now = text(find(prefix, pre));
        if (now != null && re.test(now)) {
          setTimeout(() => resolve([performance.now(), now]), 0);
          return;
        }
        if (performance.now() - t0 > timeout) { reject(new Error('text not shown: ' + pattern)); return; }
        requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
      return;
    }
    let done = false, observer = null, watched = null, timer = null;
    const shown = (late) => {
      const now = text(find(prefix, pre));
      if (done || now == null || !re.test(now)) return false;
      done = true;
      if (late) window.__watchLate++;
      observer.disconnect();
      clearTimeout(timer);
      requestAnimationFrame(() => setTimeout(() => resolve([performance.now(), now]), 0));
      return true;
    };
    observer = new MutationObserver(() => shown(false));
    const watch = () => {
      const target = find(prefix, pre);
      const root = target && (target.shadow_el || target.el);
      if (root && root !== watched) {
        observer.disconnect();
        observer.observe(root, {subtree: true, childList: true, characterData: true});
        watched = root;
      }
    };
    const safety = () => {
      if (done) return;
      if (performance.now() - t0 > timeout) {
        done = true;
        observer.disconnect();
        reject(new Error('text not shown: ' + pattern));
        return;
      }
      watch();
      if (!shown(true)) timer = setTimeout(safety, 100);
    };
    watch();
    if (!shown(false)) timer = setTimeout(safety, 100);
  });
})();
"""
WAITS = {"page": "the page (DOM changes)", "frames": "the page (every frame)"}
PROBES = ["blocks.0.mlstm.igate", "blocks.0.mlstm.fgate", "blocks.0.mlstm.ogate", "blocks.0.mlstm.out",
          "blocks.1.mlstm.igate", "blocks.1.mlstm.fgate", "blocks.1.mlstm.ogate", "blocks.1.mlstm.out"]


def start_server(prefix: str, root: Path = ROOT):
    """One `xlstm-viz serve` process of checkout `root` on a free 127.0.0.1 port, with its own session/cache folder,
    answering its first page. Returns (process, url, cache folder, the file its stderr goes to)."""
    cache = tempfile.mkdtemp(prefix=prefix)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "XDG_CACHE_HOME": cache, "PYTHONPATH": str(root)}
    err = open(Path(cache) / "server.err", "w")
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], cwd=root, env=env,
                              stdout=subprocess.DEVNULL, stderr=err)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/?session=warmup", timeout=120).read()
            break
        except OSError:
            time.sleep(0.2)
    return server, url, cache, err


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_s(stat_path: Path) -> float:
    """utime + stime of a /proc stat file, in seconds (0 if the process or thread is gone)."""
    try:
        fields = stat_path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    return kids


def _descendants(pid: int, kids) -> list[int]:
    out, todo = [], list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _kind(pid: int) -> str | None:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    text = b" ".join(cmd).decode(errors="replace")
    if "chrom" in text:
        m = re.search(r"--type=([\w-]+)", text)
        return "chromium " + (m.group(1) if m else "browser")
    if "node" in cmd[0].decode(errors="replace").rsplit("/", 1)[-1] or "playwright" in text:
        return "playwright driver (node)"
    return None


class CpuMeter:
    """CPU seconds by part over a phase, from /proc: the server's threads (the IOLoop main thread, the model threads,
    the rest: MLX / BLAS native threads, ...), each kind of chromium process, the playwright driver, this client.

    Model threads are told apart by the OS thread name the app gives them (`xv-model-*`); a checkout without those
    names shows them under "server, other threads"."""

    def __init__(self, server_pid: int):
        self.server = server_pid

    def snapshot(self) -> dict[tuple, float]:
        """{(part, pid or tid): CPU seconds so far}"""
        snap: dict[tuple, float] = {}
        for task in Path(f"/proc/{self.server}/task").iterdir():
            tid = int(task.name)
            try:
                comm = (task / "comm").read_text().strip()
            except OSError:
                continue
            part = ("server IOLoop (main thread)" if tid == self.server else
                    "server model threads" if comm.startswith("xv-model") else "server, other threads")
            snap[(part, tid)] = _cpu_s(task / "stat")
        kids = _children()
        for pid in _descendants(os.getpid(), kids):
            kind = _kind(pid)
            if kind is not None:
                snap[(kind, pid)] = _cpu_s(Path(f"/proc/{pid}/stat"))
        snap[("benchmark client (python)", os.getpid())] = _cpu_s(Path(f"/proc/{os.getpid()}/stat"))
        return snap

    @staticmethod
    def parts(before: dict, after: dict) -> dict[str, float]:
        """CPU seconds per part between two snapshots (a process started meanwhile counts from zero)."""
        out: dict[str, float] = {}
        for key, t in after.items():
            out[key[0]] = out.get(key[0], 0.0) + max(0.0, t - before.get(key, 0.0))
        return out


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else float("nan")


class Client:
    def __init__(self, browser, url, key, role, probe=None, long_prompt=None, think: float = 0.0,
                 wait: str = "page"):
        self.browser, self.url, self.key, self.role, self.probe = browser, url, key, role, probe
        self.long_prompt = long_prompt
        self.think = think
        self.wait = wait  # "page" / "frames": WATCH_HOOK; "playwright": its text locators (polled, see the docstring)
        self.buttons: dict = {}
        self.lat: list[float] = []
        self.errors: list[str] = []
        self.resources: list[str] = []  # failed loads, by URL
        self.leaks: list[str] = []
        self.steps = 0

    async def open(self):
        self.ctx = await self.browser.new_context(viewport={"width": 1280, "height": 800})
        self.page = await self.ctx.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        # which resource a console "Failed to load resource" was: the request's own failure or status
        self.page.on("requestfailed", lambda r: self.resources.append(f"{r.url} ({r.failure})"))
        self.page.on("response", lambda r: self.resources.append(f"{r.url} (HTTP {r.status})")
                     if r.status >= 400 else None)
        await self.page.goto(f"{self.url}/?session={self.key}", timeout=180_000)
        await self.page.wait_for_selector(".bk-Canvas", timeout=180_000)
        await self.page.get_by_text("ran ", exact=False).first.wait_for(timeout=180_000)
        if self.role == "toggle":
            await self.page.get_by_text("Diff", exact=True).click()
            box = self.page.get_by_label("cell to ablate")
            await box.fill(self.probe)
            await box.press("Enter")
        elif self.role == "step":
            await self.page.get_by_text("Debugger", exact=True).click()
        elif self.role == "long":
            await self.page.get_by_label("prompt (task labels / text, or token ids)").fill(self.long_prompt)
        await self.page.wait_for_timeout(500)
        await self.page.evaluate(WATCH_HOOK)
        await self.page.evaluate("(mode) => { window.__watchMode = mode; }", "frames" if self.wait == "frames" else
                                 "observer")
        self.finished = False

    async def _button(self, name):
        """The button's element, found once: a role search per click is a walk of the whole document in the page."""
        if name not in self.buttons:
            self.buttons[name] = await self.page.get_by_role("button", name=name, exact=True).element_handle()
        return self.buttons[name]

    async def _shown(self, prefix, pattern, timeout):
        """Wait until the pane whose text matches `prefix` shows `pattern` (regexes); returns its text."""
        if self.wait in ("page", "frames"):
            _, text = await self.page.evaluate("([p, r, t]) => window.__waitText(p, r, t)", [prefix, pattern, timeout])
            return text
        loc = self.page.get_by_text(re.compile(pattern)).first
        await loc.wait_for(timeout=timeout)
        return await loc.inner_text()

    async def _timed(self, button, prefix, pattern, timeout=120_000):
        target = await self._button(button) if self.wait != "playwright" else \
            self.page.get_by_role("button", name=button, exact=True)
        t0 = time.perf_counter()
        await target.click()
        text = await self._shown(prefix, pattern, timeout)
        ms = (time.perf_counter() - t0) * 1000
        if self.think:  # a user reads the result before the next click
            await asyncio.sleep(self.think)
        return ms, text.strip()

    async def once(self):
        if self.role == "toggle":
            ms, shown = await self._timed("Ablate (zero output)", r"^ablations: ", r"^ablations: #\d+ zero ")
            self.lat.append(ms)
            if not re.fullmatch(rf"ablations: #\d+ zero {re.escape(self.probe)}", shown):
                self.leaks.append(f"{self.key} shows {shown!r}")
            self.lat.append((await self._timed("Clear ablations", r"^ablations: ", r"^ablations: none$"))[0])
        elif self.role == "step":
            if self.finished:  # the pass is done: start again
                await (await self._button("Reset")).click()
                await self._shown(r"^(stopped \(|finished)", r"^stopped \(start\)", 120_000)
                self.steps = 0
            self.steps += 1
            ms, status = await self._timed("Step", r"^(stopped \(|finished)",
                                           rf"^(stopped \(\w+\), {self.steps} cells run|finished: logits ready)")
            self.lat.append(ms)
            self.finished = status.startswith("finished")
        else:
            ms, _ = await self._timed("Run prompt", r"^(ran \d+ tokens|running)", r"^ran \d{4,} tokens", timeout=300_000)
            self.lat.append(ms)
            await (await self._button("MQAR example")).click()  # back to a short prompt
            await self._shown(r"^(ran \d+ tokens|running)", r"^ran \d{1,3} tokens", 300_000)
            await self.page.get_by_label("prompt (task labels / text, or token ids)").fill(self.long_prompt)

    async def run_for(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                await self.once()
            except Exception as exc:  # noqa: BLE001 - a timeout is a finding, reported
                self.errors.append(f"driver: {type(exc).__name__}: {str(exc)[:200]}")
                return

    async def close(self):
        try:  # results the observer missed and the 100 ms safety check found (see WATCH_HOOK)
            self.late = await self.page.evaluate("window.__watchLate || 0")
        except Exception:  # noqa: BLE001 - a page that is gone has nothing to count
            self.late = 0
        await self.ctx.close()


def spy_report(path: str, clicks: int, top: int = 12) -> list[str]:
    """py-spy's raw (collapsed) samples: active time per server thread per click, and the functions the main
    thread and the model threads spend it in (inclusive)."""
    import collections

    per_thread, incl = collections.Counter(), collections.defaultdict(collections.Counter)
    for row in Path(path).read_text().splitlines():
        stack, n = row.rsplit(" ", 1)
        frames = stack.split(";")
        head = frames[0]
        group = ("main" if "MainThread" in head else "model" if "xlstm-viz-model" in head else
                 head.split('"')[1] if '"' in head else head)
        per_thread[group] += int(n)
        if group in ("main", "model"):
            for f in {f.split(" (")[0] + " (" + f.rsplit("/", 1)[-1].split(":")[0] for f in frames[1:]}:
                incl[group][f] += int(n)
    rate, n = 100, max(1, clicks)
    lines = ["  py-spy (active samples, ms per click): " + ", ".join(
        f"{t} {c * 1000 / rate / n:.0f}" for t, c in per_thread.most_common())]
    for group in ("main", "model"):
        lines.append(f"   {group} thread(s), inclusive:")
        lines += [f"    {c * 1000 / rate / n:7.1f}  {f}" for f, c in incl[group].most_common(top)]
    return lines


async def main_async(args):
    from playwright.async_api import async_playwright

    root = Path(args.root).resolve() if args.root else ROOT
    server, url, cache, err = start_server("xlstm-viz-load-", root)
    meter = CpuMeter(server.pid)
    report: list[str] = []

    def line(name, xs):
        return f"  {name:<48} n={len(xs):4d}  p50 {pct(xs, 50):7.0f} ms  p95 {pct(xs, 95):7.0f} ms"

    def cpu_lines(before, after, wall, clicks):
        parts = CpuMeter.parts(before, after)
        total = sum(parts.values())
        out = [f"   CPU over {wall:.0f} s wall, {clicks} clicks: {total:.1f} CPU-s ({total / wall:.2f} cores); "
               "ms per click by part:"]
        for part, sec in sorted(parts.items(), key=lambda kv: -kv[1]):
            if sec >= 0.05:
                out.append(f"    {sec * 1000 / max(1, clicks):7.0f}  {part} ({sec:.1f} s)")
        return out

    try:
        long_prompt = " ".join(str(2 + i % 60) for i in range(args.long))
        async with async_playwright() as p:
            launched = []

            async def browser():
                if launched and args.browsers == "shared":
                    return launched[0]
                b = await p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                            args=["--no-sandbox", "--disable-background-networking"])
                launched.append(b)
                return b

            solo = Client(await browser(), url, "load-solo", "toggle", PROBES[0], wait=args.wait)
            await solo.open()
            rss0 = rss_mb(server.pid)
            c0, t0 = meter.snapshot(), time.monotonic()
            await solo.run_for(args.solo)
            report.append(line("1 session, toggle (ablate/clear + re-run)", solo.lat))
            report += cpu_lines(c0, meter.snapshot(), time.monotonic() - t0, len(solo.lat))
            solo_p95 = pct(solo.lat, 95)
            await solo.close()
            await asyncio.sleep(2)
            clients = [Client(await browser(), url, f"load-{i}", "toggle" if i % 2 == 0 else "step",
                              PROBES[i % len(PROBES)], wait=args.wait) for i in range(args.sessions)]
            rss_before = rss_mb(server.pid)
            for c in clients:  # one at a time: opening is not what is measured
                await c.open()
            rss_open = rss_mb(server.pid)
            heavy = Client(await browser(), url, "load-long", "long", long_prompt=long_prompt, wait=args.wait)
            await heavy.open()
            n = args.sessions
            eight_p95 = None
            for think in [0.0] + [t for t in args.think if t > 0]:
                for c in [*clients, heavy]:
                    c.think = think
                    c.lat.clear()
                mode = "zero think time" if think == 0 else f"think {think:g} s"
                spy = None
                if args.py_spy and think == 0:
                    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw",
                                            "--threads", "-r", "100", "-o", args.py_spy, "-p", str(server.pid)],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    await asyncio.sleep(1.0)
                c0, t0 = meter.snapshot(), time.monotonic()
                await asyncio.gather(*(c.run_for(args.seconds) for c in clients))
                c1, wall = meter.snapshot(), time.monotonic() - t0
                if spy is not None:
                    spy.send_signal(2)
                    spy.wait(timeout=60)
                all2 = [x for c in clients for x in c.lat]
                if think == 0:
                    eight_p95 = pct(all2, 95)
                report.append(f" {n} sessions, {mode}:")
                report.append(line(f"{n} sessions, all clicks", all2))
                report.append(line(f"{n} sessions, toggles", [x for c in clients if c.role == "toggle" for x in c.lat]))
                report.append(line(f"{n} sessions, debugger steps",
                                   [x for c in clients if c.role == "step" for x in c.lat]))
                report += cpu_lines(c0, c1, wall, len(all2))
                if spy is not None:
                    report += spy_report(args.py_spy, len(all2))
                for c in clients:
                    c.lat.clear()
                c0, t0 = meter.snapshot(), time.monotonic()
                await asyncio.gather(heavy.run_for(args.long_seconds),
                                     *(c.run_for(args.long_seconds) for c in clients))
                c1, wall = meter.snapshot(), time.monotonic() - t0
                all3 = [x for c in clients for x in c.lat]
                report.append(line(f"{n} sessions + one {args.long}-token run, others", all3))
                report.append(line(f"the {args.long}-token run itself (click -> shown)", heavy.lat))
                report += cpu_lines(c0, c1, wall, len(all3) + len(heavy.lat))
            rss_end = rss_mb(server.pid)
            every = [e for c in [solo, heavy, *clients] for e in c.errors]
            # failed resource loads are counted apart, with the URLs that failed
            resources = [e for e in every if e.startswith("Failed to load resource")]
            failed_urls = sorted({r for c in [solo, heavy, *clients] for r in c.resources})
            errors = [e for e in every if e not in resources]
            leaks = [x for c in clients for x in c.leaks]
            for c in clients:
                await c.close()
            await heavy.close()
            for b in launched:
                await b.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
        err.close()
    server_err = (Path(cache) / "server.err").read_text()
    tracebacks = server_err.count("Traceback")
    # Bokeh's own race when a page closes before its session is attached (bokeh/server/connection.py assert)
    bokeh_close = server_err.count("assert self._session is not None")
    # saved files: a toggling session's file may name only its own cell
    for c in clients:
        path = Path(cache) / "xlstm-viz" / "sessions" / f"{c.key}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            others = [a["probe"] for a in data.get("ablations", []) if a["probe"] != c.probe]
            if others:
                leaks.append(f"{c.key}.json saved {others}")

    print(f"dashboard load test, demo model, app of {root}, 127.0.0.1, {args.browsers} chromium, shown decided by "
          f"{WAITS.get(args.wait, 'playwright locators')} "
          f"({len(launched)} browser process{'es' if len(launched) > 1 else ''}); load average "
          f"{os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} cores")
    print("\n".join(report))
    per = (rss_open - rss_before) / args.sessions
    print(f"  server RSS: {rss0:.0f} MB with one session, +{per:.1f} MB per further session "
          f"({rss_before:.0f} -> {rss_open:.0f} MB for {args.sessions}), {rss_end:.0f} MB at the end")
    if args.wait == "page":
        late = sum(getattr(c, "late", 0) for c in [solo, heavy, *clients])
        print(f"  results seen by the 100 ms safety check, not the DOM observer (each up to 100 ms late): {late}")
    print(f"  server tracebacks: {tracebacks} ({bokeh_close} of them Bokeh's close race); page/driver errors: "
          f"{len(errors)} (+{len(resources)} failed resource loads); state shared: {len(leaks)}")
    for e in (errors + leaks)[:10]:
        print("   -", e[:200])
    for r in failed_urls[:10]:
        print("   - failed load:", r[:200])
    ok = (solo_p95 < 300 and eight_p95 < 1000 and per < 50 and tracebacks == bokeh_close
          and not errors and not leaks and not resources)
    print("  targets (p95 < 300 ms alone, < 1 s with eight at zero think time, < 50 MB/session, no errors, no "
          "failed loads, no shared state):", "PASS" if ok else "FAIL")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--solo", type=float, default=20)
    ap.add_argument("--long", type=int, default=2000)
    ap.add_argument("--long-seconds", type=float, default=30)
    ap.add_argument("--think", type=float, nargs="*", default=[1.0],
                    help="after the zero-think-time phases, repeat them with these think times (s; none: only zero)")
    ap.add_argument("--browsers", choices=("shared", "each"), default="shared",
                    help="one chromium for every page, or one chromium process per session")
    ap.add_argument("--wait", choices=("page", "frames", "playwright"), default="page",
                    help="decide 'shown' in the page when the pane's DOM changes (page), in every frame (frames: "
                         "sessions 6-7), or with playwright's polled text locators")
    ap.add_argument("--root", help="serve the app of this checkout instead (e.g. the main branch, for A/B)")
    ap.add_argument("--py-spy", metavar="FILE", help="record the server with py-spy during the eight-session phase")
    args = ap.parse_args()
    if not 1 <= args.sessions <= 16 or max(args.seconds, args.solo, args.long_seconds) > 600:
        raise SystemExit("bounded: 1..16 sessions, at most 600 s a phase")
    if any(t < 0 or t > 30 for t in args.think):
        raise SystemExit("--think: seconds between 0 and 30")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
