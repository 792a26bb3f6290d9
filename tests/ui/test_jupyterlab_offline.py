"""Offline in a live JupyterLab: each notebook, run cell by cell in a real JupyterLab on localhost, asks no other host
for anything and logs no console error, including the updates its later cells send to earlier outputs over the
Jupyter comm (those used to link Panel's stylesheets on cdn.holoviz.org; see xlstm_viz/dashboard/offline.py).

Every request leaves through a route that lets localhost through and aborts (and records) everything else, so the test
catches an attempt even on a machine that is online.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.ui.conftest import console_errors, free_port, wait_until
from tests.ui.test_offline_browser import NOTEBOOKS, ROOT, block_remote

NOTEBOOK_JS = "window.jupyterapp && window.jupyterapp.shell.currentWidget"
KERNEL_IDLE_JS = ("(() => { const s = window.jupyterapp.shell.currentWidget.sessionContext;"
                  " return !!(s && s.session && s.session.kernel && s.session.kernel.status === 'idle'); })()")
# [number of code cells, how many have run, output types of the error outputs]
CELLS_JS = """(() => {
  const cells = window.jupyterapp.shell.currentWidget.content.widgets.filter(c => c.model.type === 'code');
  const errors = cells.flatMap(c => c.model.toJSON().outputs.filter(o => o.output_type === 'error')
                                              .map(o => o.ename + ': ' + o.evalue));
  return [cells.length, cells.filter(c => c.model.executionCount !== null).length, errors];
})()"""


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """A JupyterLab on a free localhost port serving the repository, with a throw-away config and autosave off (the
    run must not write the executed notebooks back into notebooks/)."""
    tmp = tmp_path_factory.mktemp("jupyterlab")
    settings = tmp / "settings" / "@jupyterlab" / "docmanager-extension"
    settings.mkdir(parents=True)
    (settings / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}), encoding="utf-8")
    # The kernel must get PANEL_INLINE from the notebook's own `import xlstm_viz`, not from this test process.
    env = {k: v for k, v in os.environ.items() if k != "PANEL_INLINE"}
    env.update(XDG_CACHE_HOME=str(tmp), JUPYTER_CONFIG_DIR=str(tmp / "cfg"), JUPYTER_RUNTIME_DIR=str(tmp / "rt"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp / "ws"))
    port = free_port()
    log = open(tmp / "lab.log", "w")
    lab = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
         "--IdentityProvider.token=", "--ServerApp.password=", "--LabApp.expose_app_in_browser=True",
         "--ServerApp.disable_check_xsrf=True", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate", f"--ServerApp.root_dir={ROOT}"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=5).read()
                break
            except OSError:
                if time.time() > deadline or lab.poll() is not None:
                    pytest.fail(f"JupyterLab did not start: {(tmp / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        lab.terminate()
        try:
            lab.wait(20)
        except subprocess.TimeoutExpired:
            lab.kill()
        log.close()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_notebook_run_live_in_jupyterlab_requests_nothing_but_localhost(page, jupyterlab, path, artifacts):
    remote = block_remote(page)
    errors = console_errors(page)
    # ?reset: a fresh workspace, so that the notebooks of earlier tests are not reopened next to this one
    page.goto(f"{jupyterlab}/lab/tree/notebooks/{path.name}?reset")
    page.wait_for_function(NOTEBOOK_JS + " && " + NOTEBOOK_JS + ".sessionContext", timeout=30000)
    page.wait_for_function(KERNEL_IDLE_JS, timeout=30000)
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

    def all_ran():
        total, ran, failed = page.evaluate(CELLS_JS)
        assert not failed, f"{path.name}: a cell raised {failed}"
        assert total > 0 and ran == total and page.evaluate(KERNEL_IDLE_JS), f"{path.name}: {ran}/{total} cells ran"
        return True

    try:
        wait_until(all_ran, timeout=90, interval=0.5, page=page)
        page.wait_for_selector(".bk-Canvas", timeout=60000)  # the debugger notebook draws ~15 figures
        page.wait_for_timeout(1500)  # the stylesheet loads the last comm messages start
        assert remote == [], remote
        assert errors == [], errors
    finally:  # one kernel at a time: the next notebook must not share the CPU with this one's
        page.screenshot(path=str(artifacts / f"jupyterlab_offline_{path.stem}.png"))
        page.evaluate("window.jupyterapp.serviceManager.sessions.shutdownAll()")
