"""Load test: concurrent browser sessions against one `xlstm-viz serve` process (localhost only, bounded in time).

Phases, each against the same server on 127.0.0.1:
1. one session alone, toggling (Diff tab: "Ablate" then "Clear ablations", each a model re-run) for --solo seconds;
2. --sessions sessions at once for --seconds: even ones toggle as above, odd ones press the debugger's "Step";
3. the same, plus one more session that re-runs a --long-token prompt ("Run prompt") over and over.

Latency = from the click to the page showing the new text (the ablation list, the debugger's step number), measured
in the browser's page (playwright + Debian chromium). Also reported: server errors (tracebacks on its stderr,
console errors in the pages), state shared between sessions (a page whose ablation list shows another session's
cell; a saved session file naming another session's cell), and the server's RSS growth per open session.
Targets on the demo (issue 17): p95 < 300 ms alone, < 1 s with eight; < 50 MB per session.

Run: PYTHONPATH=. python benchmarks/dashboard_load.py [--sessions 8] [--seconds 60] [--solo 20] [--long 2000]
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


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else float("nan")


class Client:
    def __init__(self, browser, url, key, role, probe=None, long_prompt=None):
        self.browser, self.url, self.key, self.role, self.probe = browser, url, key, role, probe
        self.long_prompt = long_prompt
        self.lat: list[float] = []
        self.errors: list[str] = []
        self.leaks: list[str] = []
        self.steps = 0

    async def open(self):
        self.ctx = await self.browser.new_context(viewport={"width": 1280, "height": 800})
        self.page = await self.ctx.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
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

    async def _timed(self, button, text, timeout=120_000):
        t0 = time.perf_counter()
        await self.page.get_by_role("button", name=button, exact=True).click()
        await self.page.get_by_text(text).first.wait_for(timeout=timeout)
        return (time.perf_counter() - t0) * 1000

    async def once(self):
        if self.role == "toggle":
            self.lat.append(await self._timed("Ablate (zero output)", re.compile(r"^ablations: #\d+ zero ")))
            shown = await self.page.get_by_text(re.compile(r"^ablations: ")).first.inner_text()
            if shown.strip() != "" and not re.fullmatch(rf"ablations: #\d+ zero {re.escape(self.probe)}", shown.strip()):
                self.leaks.append(f"{self.key} shows {shown.strip()!r}")
            self.lat.append(await self._timed("Clear ablations", re.compile(r"^ablations: none$")))
        elif self.role == "step":
            self.steps += 1
            self.lat.append(await self._timed("Step", re.compile(rf"step #{self.steps - 1}\)")))
        else:
            self.lat.append(await self._timed("Run prompt", re.compile(r"ran \d{4,} tokens"), timeout=300_000))
            await self.page.get_by_role("button", name="MQAR example", exact=True).click()  # back to a short prompt
            await self.page.get_by_text(re.compile(r"ran \d{1,3} tokens")).first.wait_for(timeout=300_000)
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
        await self.ctx.close()


async def main_async(args):
    from playwright.async_api import async_playwright

    server, url, cache, err = start_server("xlstm-viz-load-")
    try:
        long_prompt = " ".join(str(2 + i % 60) for i in range(args.long))
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                              args=["--no-sandbox", "--disable-background-networking"])
            solo = Client(browser, url, "load-solo", "toggle", PROBES[0])
            await solo.open()
            rss0 = rss_mb(server.pid)
            await solo.run_for(args.solo)
            await solo.close()
            await asyncio.sleep(2)
            clients = [Client(browser, url, f"load-{i}", "toggle" if i % 2 == 0 else "step", PROBES[i % len(PROBES)])
                       for i in range(args.sessions)]
            rss_before = rss_mb(server.pid)
            for c in clients:  # one at a time: opening is not what is measured
                await c.open()
            rss_open = rss_mb(server.pid)
            await asyncio.gather(*(c.run_for(args.seconds) for c in clients))
            phase2 = {c.key: list(c.lat) for c in clients}
            for c in clients:
                c.lat.clear()
            heavy = Client(browser, url, "load-long", "long", long_prompt=long_prompt)
            await heavy.open()
            await asyncio.gather(heavy.run_for(args.long_seconds),
                                 *(c.run_for(args.long_seconds) for c in clients))
            rss_end = rss_mb(server.pid)
            every = [e for c in [solo, heavy, *clients] for e in c.errors]
            # off-host resources (fonts, the toast library's CDN) fail offline: counted apart, the offline work's to fix
            resources = [e for e in every if e.startswith("Failed to load resource")]
            errors = [e for e in every if e not in resources]
            leaks = [x for c in clients for x in c.leaks]
            for c in clients:
                await c.close()
            await heavy.close()
            await browser.close()
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

    def line(name, xs):
        return f"  {name:<44} n={len(xs):4d}  p50 {pct(xs, 50):7.0f} ms  p95 {pct(xs, 95):7.0f} ms"

    all2 = [x for v in phase2.values() for x in v]
    tog2 = [x for c in clients if c.role == "toggle" for x in phase2[c.key]]
    step2 = [x for c in clients if c.role == "step" for x in phase2[c.key]]
    all3 = [x for c in clients for x in c.lat]
    print(f"dashboard load test, demo model, 127.0.0.1, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(line("1 session, toggle (ablate/clear + re-run)", solo.lat))
    print(line(f"{args.sessions} sessions, all clicks", all2))
    print(line(f"{args.sessions} sessions, toggles", tog2))
    print(line(f"{args.sessions} sessions, debugger steps", step2))
    print(line(f"{args.sessions} sessions + one {args.long}-token run, others", all3))
    print(line(f"the {args.long}-token run itself (click -> shown)", heavy.lat))
    per = (rss_open - rss_before) / args.sessions
    print(f"  server RSS: {rss0:.0f} MB with one session, +{per:.1f} MB per further session "
          f"({rss_before:.0f} -> {rss_open:.0f} MB for {args.sessions}), {rss_end:.0f} MB at the end")
    print(f"  server tracebacks: {tracebacks} ({bokeh_close} of them Bokeh's close race); page/driver errors: "
          f"{len(errors)} (+{len(resources)} failed off-host resource loads); state shared: {len(leaks)}")
    for e in (errors + leaks)[:10]:
        print("   -", e[:200])
    ok = (pct(solo.lat, 95) < 300 and pct(all2, 95) < 1000 and per < 50 and tracebacks == bokeh_close
          and not errors and not leaks)
    print("  targets (p95 < 300 ms alone, < 1 s with eight, < 50 MB/session, no errors, no shared state):",
          "PASS" if ok else "FAIL")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--solo", type=float, default=20)
    ap.add_argument("--long", type=int, default=2000)
    ap.add_argument("--long-seconds", type=float, default=30)
    args = ap.parse_args()
    if not 1 <= args.sessions <= 16 or args.seconds > 600:
        raise SystemExit("bounded: 1..16 sessions, at most 600 s a phase")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
