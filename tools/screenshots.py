"""Screenshots of every dashboard tab at 1280x800, taken with headless Debian chromium from a served app.

    python tools/screenshots.py [--out assets/screenshots]

Each tab is opened by its label; the Debugger tab is stopped at a breakpoint on blocks.0.mlstm.memory and the
Patching tab runs one patch first, so the pictures show the views with data; the Model tab is taken once more in the
dark theme (`?theme=dark`), scrolled to the graphs. Look at each file before committing.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import time
import urllib.request
from pathlib import Path

TABS = ("Model", "Over time", "Debugger", "Diff", "Patching", "NCPS builder (detached)", "Export")
# file name of each tab's picture (the live NCPS tab is taken on the hybrid demo, the only model with a cfc block)
FILES = {"NCPS builder (detached)": "ncps_builder", "NCPS (live model)": "ncps_live"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="assets/screenshots")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import os

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp()  # a fresh session store: no saved edits from earlier runs
    import panel as pn

    import xlstm_viz.blas  # noqa: F401
    from xlstm_viz.dashboard.app import TAB_LOADING, DashboardApp

    apps = []

    def factory():
        app = DashboardApp()
        apps.append(app)
        return app.template()

    port = _port()
    pn.extension(notifications=True)
    server = pn.serve(factory, port=port, address="localhost", show=False, threaded=True, start=True,
                      websocket_origin=[f"localhost:{port}"])
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://localhost:{port}/", timeout=30).read()
            break
        except OSError:
            time.sleep(0.3)
    from playwright.sync_api import sync_playwright

    def wait(fn, timeout=60.0):
        end = time.time() + timeout
        while time.time() < end:
            if fn():
                return
            page.wait_for_timeout(200)
        raise TimeoutError(f"{fn} not met")

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            n = len(apps)
            page.goto(f"http://localhost:{port}/")
            page.wait_for_selector(".bk-Canvas", timeout=60000)
            wait(lambda: len(apps) > n and apps[-1].session.trace is not None and not apps[-1].session.busy)
            app = apps[-1]
            page.wait_for_timeout(1500)
            for tab in TABS:
                page.get_by_text(tab, exact=True).first.click()
                # a tab's views go into the page when it is first shown (app.py tabs())
                page.get_by_text(TAB_LOADING.format(tab)).wait_for(state="hidden", timeout=60000)
                page.wait_for_timeout(800)
                if tab == "Debugger":
                    page.get_by_role("button", name="Add breakpoint").click()
                    page.wait_for_timeout(500)
                    page.get_by_role("button", name="Continue").click()
                    wait(lambda: app.session.step_event is not None)
                    page.wait_for_timeout(1500)
                if tab == "Patching":
                    page.get_by_role("button", name="Use current prompt (+ MQAR corruption)").click()
                    wait(lambda: bool(app.patching_view.corrupted))
                    page.wait_for_timeout(500)
                    page.get_by_role("button", name="Patch", exact=True).click()
                    wait(lambda: app.patching_view.result is not None)
                    page.wait_for_timeout(1500)
                name = FILES.get(tab, tab.lower().replace(" ", "_"))
                page.screenshot(path=str(out / f"tab_{name}.png"))
                print(out / f"tab_{name}.png")
            n = len(apps)
            page.goto(f"http://localhost:{port}/?theme=dark")  # the dark theme, first screen
            page.wait_for_selector(".bk-Canvas", timeout=60000)
            wait(lambda: len(apps) > n and apps[-1].session.trace is not None and not apps[-1].session.busy)
            page.wait_for_timeout(1500)
            page.mouse.move(800, 500)
            page.mouse.wheel(0, 600)  # down to the graphs
            page.wait_for_timeout(1000)
            page.screenshot(path=str(out / "tab_model_dark.png"))
            print(out / "tab_model_dark.png")
            n = len(apps)
            page.goto(f"http://localhost:{port}/?model=hybrid")
            page.wait_for_selector(".bk-Canvas", timeout=60000)
            wait(lambda: len(apps) > n and apps[-1].session.trace is not None and not apps[-1].session.busy)
            page.wait_for_timeout(1500)
            page.get_by_text("NCPS (live model)", exact=True).first.click()
            page.get_by_text(TAB_LOADING.format("NCPS (live model)")).wait_for(state="hidden", timeout=60000)
            page.wait_for_timeout(3000)
            page.screenshot(path=str(out / "tab_ncps_live.png"))
            print(out / "tab_ncps_live.png")
            browser.close()
    finally:
        for app in apps:
            app.session.close()
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
