"""Real-browser tests: pytest-playwright driving Debian's chromium (never `playwright install`).

These tests FAIL when chromium is missing, because CI (.ci/run) installs it with apt. A local run
can opt out explicitly with `XLSTM_VIZ_UI=0` (or `-m "not ui"`); nothing is skipped silently.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.ui)
    if os.environ.get("XLSTM_VIZ_UI", "1") == "0":
        skip = pytest.mark.skip(reason="browser tests switched off with XLSTM_VIZ_UI=0")
        for item in items:
            if "ui" in item.keywords:
                item.add_marker(skip)


def chromium_path() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("Debian chromium is not installed (apt-get install -y chromium); set XLSTM_VIZ_UI=0 to opt out")
    return exe


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": chromium_path(), "headless": True, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    # Tall enough that every figure the tests click is inside the viewport.
    return {**browser_context_args, "viewport": {"width": 1600, "height": 1800}}


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, server, port):
        self.server, self.port = server, port
        self.url = f"http://localhost:{port}/"


_WARM: list[int] = []  # ports of the servers this process has started and seen answer


@pytest.fixture
def serve():
    """serve(factory) -> Served: a Panel server on a free localhost port, stopped after the test."""
    import panel as pn

    servers = []

    def start(factory, **kwargs) -> Served:
        port = free_port()
        server = pn.serve(factory, port=port, address="localhost", show=False, threaded=True, start=True,
                          websocket_origin=[f"localhost:{port}"], **kwargs)
        # The first server of the test process is asked for its page once: that builds a whole app, which pays
        # the process's one-off costs (imports, first traces) before a test's own timeouts run. Later servers are
        # asked for a path they do not have: the 404 says they answer, without building an app for a session no
        # page would use (1-4 s a test on the 2-core machine).
        path = "" if not _WARM else "xlstm-viz-ready-probe"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                # One request that may take long when it builds an app: a retry after a short timeout would add
                # another session's work to the one still running (on a loaded 2-core machine, 10 s was hit)
                urllib.request.urlopen(f"http://localhost:{port}/{path}", timeout=60).read()
                break
            except urllib.error.HTTPError:
                if path:
                    break
                time.sleep(0.2)
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail(f"the Panel server on port {port} did not answer within 60 s")
        _WARM.append(port)
        servers.append(server)
        return Served(server, port)

    yield start
    for s in servers:
        s.stop()


def wait_until(fn, timeout: float = 15.0, interval: float = 0.1, page=None):
    """Poll `fn` (returns truthy, or raises AssertionError) until it passes; the last failure is raised."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            result = fn()
            if result or result is None:
                return result
        except AssertionError as exc:
            last = exc
        if page is not None:
            page.wait_for_timeout(int(interval * 1000))
        else:
            time.sleep(interval)
    if last is not None:
        raise last
    raise AssertionError(f"condition {fn} not met within {timeout} s")


def bokeh_to_screen(page, fig_id: str, x: float, y: float) -> tuple[float, float]:
    """Page pixel coordinates of data point (x, y) in the Bokeh figure with model id `fig_id`."""
    return tuple(page.evaluate(
        """([id, x, y]) => {
            for (const doc of Bokeh.documents) {
              const model = doc.get_model_by_id(id);
              if (!model) continue;
              const view = Bokeh.index.get_one(model);
              const frame = view.frame;
              const canvas = view.canvas_view.el.getBoundingClientRect();
              return [canvas.left + frame.x_scale.compute(x), canvas.top + frame.y_scale.compute(y)];
            }
            throw new Error('no Bokeh figure with id ' + id);
        }""",
        [fig_id, x, y],
    ))


def model_value(page, model_id: str, attr: str):
    """A Bokeh model's attribute as the browser holds it (None while the model is not there yet)."""
    return page.evaluate("""([id, attr]) => {
        for (const doc of Bokeh.documents) { const m = doc.get_model_by_id(id); if (m) return m[attr]; }
        return null; }""", [model_id, attr])


def browser_column(page, source_id: str, column: str) -> list | None:
    """A ColumnDataSource column as the browser holds it (None while the model is not there yet)."""
    return page.evaluate(
        """([id, column]) => {
            for (const doc of Bokeh.documents) {
              const model = doc.get_model_by_id(id);
              if (model) return Array.from(model.data[column]);
            }
            return null;
        }""",
        [source_id, column],
    )


class ConsoleErrors(list):
    """Console errors and page exceptions. None is tolerated: every page works offline, so a failed load of any
    resource is an error (xlstm_viz/dashboard/offline.py)."""

    def __init__(self, page):
        super().__init__()
        page.on("console", lambda msg: self.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.append(str(exc)))

    def real(self) -> list[str]:
        return list(self)


def console_errors(page) -> ConsoleErrors:
    return ConsoleErrors(page)


# the document events each page receives and sends: "kind model-id attr" per event, one list per message
TRAFFIC = """
window.__in = [];
window.__out = [];
const Orig = window.WebSocket;
const events = (d) => JSON.parse(d).events.map((ev) => `${ev.kind} ${ev.model ? ev.model.id : ""} ${ev.attr || ""}`);
window.WebSocket = function (...a) {
  const ws = new Orig(...a);
  ws.addEventListener('message', (e) => {
    if (typeof e.data === 'string' && e.data.startsWith('{"events"')) window.__in.push(events(e.data));
  });
  const send = ws.send.bind(ws);
  ws.send = (d) => {
    if (typeof d === 'string' && d.startsWith('{"events"')) window.__out.push(events(d));
    return send(d);
  };
  return ws;
};
window.WebSocket.prototype = Orig.prototype;
"""


def settle(*pages, quiet_ms: int = 1000, timeout: float = 60) -> None:
    """Wait until no page (with TRAFFIC installed) has received a document message for `quiet_ms`: on a loaded
    machine the work a previous input started can still be arriving after a fixed pause."""
    deadline = time.monotonic() + timeout
    count = lambda: [p.evaluate("window.__in.length") for p in pages]  # noqa: E731
    while time.monotonic() < deadline:
        before = count()
        pages[0].wait_for_timeout(quiet_ms)
        if count() == before:
            return
    raise AssertionError(f"the pages kept receiving messages for {timeout} s")
