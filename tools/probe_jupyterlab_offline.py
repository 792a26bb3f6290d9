"""Diagnostic (not a test): run a notebook in a live JupyterLab on localhost in chromium and list every request to
another host. Usage: python tools/probe_jupyterlab_offline.py [notebooks/NAME.ipynb]; exit code 1 if any.

Known result (Panel 1.9.4): the outputs render, but live comm updates still ask cdn.holoviz.org for four Panel
stylesheets (loading.css, markdown.css, theme/default.css, theme/native.css), with or without BOKEH_RESOURCES=inline.
"""
import os, shutil, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path
from urllib.parse import urlsplit
from playwright.sync_api import sync_playwright
root = str(Path(__file__).resolve().parents[1])
notebook = sys.argv[1] if len(sys.argv) > 1 else "notebooks/01_autoncp_wiring.ipynb"
tmp = Path(tempfile.mkdtemp(prefix="xlstm-viz-lab-"))
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
env = {k: v for k, v in os.environ.items() if k != "PANEL_INLINE"}
env["XDG_CACHE_HOME"] = str(tmp); env["JUPYTER_CONFIG_DIR"] = str(tmp / "cfg"); env["JUPYTER_RUNTIME_DIR"] = str(tmp / "rt")
lab = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
                        "--IdentityProvider.token=", "--ServerApp.password=", "--LabApp.expose_app_in_browser=True",
                        "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={root}"], env=env,
                       stdout=open(tmp / "lab.log", "w"), stderr=subprocess.STDOUT)
try:
    for _ in range(300):
        try: urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=5); break
        except OSError: time.sleep(0.2)
    remote = []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        def route(r):
            u = r.request.url
            if urlsplit(u).scheme in ("data", "blob", "ws") or urlsplit(u).hostname in ("localhost", "127.0.0.1"):
                r.continue_()
            else:
                remote.append(u); r.abort()
        page.route("**/*", route)
        errs = []
        page.on("console", lambda m: errs.append(m.text) if m.type == "error" else None)
        page.goto(f"http://127.0.0.1:{port}/lab/tree/{notebook}")
        page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget && window.jupyterapp.shell.currentWidget.sessionContext", timeout=60000)
        page.wait_for_function("window.jupyterapp.shell.currentWidget.sessionContext.session && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'", timeout=90000)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_selector(".bk-Canvas", timeout=120000)
        page.wait_for_timeout(4000)
        print("canvases", page.locator(".bk-Canvas").count())
        page.screenshot(path=str(tmp / "lab.png"))
        print("remote", remote); print("errors", errs[:10])
        b.close()
finally:
    lab.terminate(); lab.wait(20)
sys.exit(1 if remote else 0)
