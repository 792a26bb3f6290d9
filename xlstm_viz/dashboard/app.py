"""The xlstm-viz dashboard app: prompt, model graphs, over-time view, debugger, diff, NCPS wiring, export.

Serve it with `xlstm-viz serve [--model PATH]`, with `panel serve xlstm_viz/dashboard/app.py`
(model from $XLSTM_VIZ_MODEL, else the demo), or inline in Jupyter with `xlstm_viz.dashboard()`.
Every browser session gets its own DashboardApp, ModelSession and model thread.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import panel as pn

from xlstm_viz.dashboard import offline as _offline  # noqa: F401  (notebook comm updates link no CDN stylesheet)
import param

from xlstm_viz.dashboard.debugger_view import DebuggerView
from xlstm_viz.dashboard.diff_view import DiffView
from xlstm_viz.dashboard.model_view import ModelView
from xlstm_viz.dashboard.notifications import guarded, notify_error
from xlstm_viz.dashboard.offline import OfflineFast
from xlstm_viz.dashboard.persistence import SessionStore, new_key
from xlstm_viz.dashboard.session import ModelSession
from xlstm_viz.dashboard.trace_view import TraceView
from xlstm_viz.dashboard.wiring_view import WiringView, build_wiring, wiring_from_json, wiring_to_json

TITLE = "xlstm-viz"
PNG_NOTE = ("PNG: use the save tool (disk icon) in each figure's toolbar. Server-side PNG export needs a "
            "webdriver (selenium + chromedriver), which this server does not use.")


def _in_server() -> bool:
    doc = pn.state.curdoc
    return doc is not None and doc.session_context is not None


class DashboardApp(pn.viewable.Viewer):
    """Whole app for one browser session (or one notebook)."""

    pairs = param.Integer(default=8, bounds=(1, 64), doc="key-value pairs of the MQAR example")
    example_seed = param.Integer(default=0, bounds=(0, None))

    def __init__(self, model=None, model_path=None, session_key: str | None = None, threaded: bool | None = None,
                 **params):
        super().__init__(**params)
        served = _in_server()
        self.served = served
        notifications = pn.state.notifications if served else None

        def on_error(exc):
            if notifications is not None:
                notifications.error(f"{type(exc).__name__}: {exc}", duration=8000)

        self.session = ModelSession(model=model, model_path=model_path,
                                    threaded=served if threaded is None else threaded,
                                    on_error=on_error if served else None)
        if served:  # stop this session's model thread when the browser tab goes away
            pn.state.on_session_destroyed(lambda ctx: self.session.close())
        self.store = SessionStore(self._session_key(session_key))
        saved = self._load_saved()
        self.wiring_view = WiringView(saved.get("ncps_wiring") or build_wiring("AutoNCP", 28, 4, 6))
        self.model_view = ModelView(self.session)
        self.trace_view = TraceView(session=self.session)
        self.debugger_view = DebuggerView(session=self.session)
        self.diff_view = DiffView(self.session)
        self.prompt_input = pn.widgets.TextAreaInput(name="prompt (task labels / text, or token ids)", height=110)
        self._status = pn.pane.Markdown("")
        self.session.param.watch(self._on_status, ["status", "busy"])
        self.session.param.watch(self._persist, ["edits", "prompt"])
        self.wiring_view.param.watch(self._persist, ["version"])
        if saved.get("edits"):
            self.session.replay_edits(saved["edits"])
        if saved.get("prompt"):
            try:
                self.session.set_prompt(saved["prompt"])
            except ValueError as exc:
                if served:
                    notify_error(exc)
                self.session.mqar_example(self.pairs, self.example_seed)
        else:
            self._example()
        self.prompt_input.value = self.session.prompt

    # -- session key & persistence -------------------------------------------------------------------
    def _session_key(self, key):
        if key is not None:
            return key
        if not self.served:
            return new_key()
        args = pn.state.session_args or {}
        raw = args.get("session", [b""])[0]
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        if not key:
            key = new_key()
            # Put the key into the URL so that a reload (or a bookmark) finds the same saved state.
            # (onload: before the page has loaded, the browser's own URL would overwrite the change)
            pn.state.onload(lambda: pn.state.location.update_query(session=key))
        return key

    def _load_saved(self) -> dict:
        try:
            data = self.store.load()
            if data.get("ncps_wiring"):
                data["ncps_wiring"] = wiring_from_json(data["ncps_wiring"])
            return data
        except ValueError as exc:
            if self.served:
                notify_error(exc)
            return {}

    def state_dict(self) -> dict:
        return {"ncps_wiring": wiring_to_json(self.wiring_view.wiring),
                "edits": [list(e) for e in self.session.edits], "prompt": self.session.prompt}

    def _persist(self, *events):
        self.store.save(self.state_dict())

    # -- prompt ---------------------------------------------------------------------------------------
    def _example(self, *_):
        self.session.mqar_example(self.pairs, self.example_seed)
        self.prompt_input.value = self.session.prompt

    def _run_prompt(self, *_):
        self.session.set_prompt(self.prompt_input.value)

    def _on_status(self, *_):
        s = self.session
        self._status.object = ("**running...**" if s.busy else s.status) + (
            f"  \nrecall accuracy {s.accuracy:.3f}" if s.accuracy is not None else "")

    # -- export / import --------------------------------------------------------------------------------
    def _trace_npz(self):
        if self.session.trace is None:
            raise ValueError("no run yet: nothing to export")
        with tempfile.TemporaryDirectory() as d:
            path = self.session.trace.save(Path(d) / "trace.npz")
            return io.BytesIO(Path(path).read_bytes())

    def _import_wiring(self, event):
        if event.new:
            self.wiring_view.set_wiring(wiring_from_json(event.new.decode("utf-8", errors="replace")))

    def _import_edits(self, event):
        if event.new:
            try:
                edits = json.loads(event.new.decode("utf-8", errors="replace"))
            except json.JSONDecodeError as exc:
                raise ValueError(f"edits file is not JSON: {exc}") from None
            if not isinstance(edits, list):
                raise ValueError("edits file must be a JSON list of [scope, block, src, dst, state] entries")
            self.session.replay_edits(edits)
            self.session.run()

    def export_panel(self):
        wiring = pn.widgets.FileDownload(callback=lambda: io.StringIO(wiring_to_json(self.wiring_view.wiring)),
                                         filename="wiring.json", label="NCPS wiring JSON", button_type="primary")
        edits = pn.widgets.FileDownload(callback=lambda: io.StringIO(json.dumps([list(e) for e in self.session.edits])),
                                        filename="model_edits.json", label="model wiring edits JSON")
        trace = pn.widgets.FileDownload(callback=guarded(self._trace_npz), filename="trace.npz", label="trace .npz")
        up_wiring = pn.widgets.FileInput(accept=".json")
        up_wiring.param.watch(guarded(self._import_wiring), "value")
        up_edits = pn.widgets.FileInput(accept=".json")
        up_edits.param.watch(guarded(self._import_edits), "value")
        return pn.Column(
            pn.pane.Markdown("#### Export"), wiring, edits, trace, pn.pane.Markdown(PNG_NOTE),
            pn.pane.Markdown("#### Import"), pn.pane.Markdown("NCPS wiring JSON"), up_wiring,
            pn.pane.Markdown("model wiring edits JSON"), up_edits,
            pn.pane.Markdown(f"session key `{self.store.key}`: edits are saved to `{self.store.path}`"),
        )

    # -- layout ---------------------------------------------------------------------------------------
    def sidebar(self):
        run = pn.widgets.Button(name="Run prompt", button_type="primary")
        run.on_click(guarded(self._run_prompt))
        example = pn.widgets.Button(name="MQAR example", button_type="success")
        example.on_click(guarded(self._example))
        c = self.session.config
        return pn.Column(
            pn.pane.Markdown(f"**model** {c.num_blocks} blocks, {c.num_heads} heads, D={c.embedding_dim}, "
                             f"vocab {c.vocab_size}"),
            self.prompt_input, pn.Row(run, example),
            pn.widgets.IntInput.from_param(self.param.pairs, name="MQAR pairs"),
            pn.widgets.IntInput.from_param(self.param.example_seed, name="example seed"),
            self._status,
        )

    def tabs(self):
        return pn.Tabs(("Model", self.model_view), ("Over time", self.trace_view), ("Debugger", self.debugger_view),
                       ("Diff", self.diff_view), ("NCPS wiring", self.wiring_view), ("Export", self.export_panel()),
                       dynamic=False, sizing_mode="stretch_width")

    def template(self):
        return pn.template.FastListTemplate(title=TITLE, sidebar=[self.sidebar()], main=[self.tabs()],
                                            sidebar_width=330, accent="#1f77b4", design=OfflineFast)

    def __panel__(self):
        return pn.Row(pn.Column(self.sidebar(), width=330), self.tabs(), sizing_mode="stretch_width")


def dashboard(model=None, model_path=None):
    """The whole app inline (Jupyter): call `pn.extension()` first."""
    return DashboardApp(model=model, model_path=model_path, threaded=False)


def serve(model_path=None, port: int = 5006, show: bool = False, address: str = "localhost", threaded: bool = False,
          **kwargs):
    """Serve the app at http://ADDRESS:PORT/ (localhost only by default); blocks unless threaded=True."""
    pn.extension(notifications=True)

    def app():
        return DashboardApp(model_path=model_path).template()

    origins = [f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"]
    return pn.serve({"/": app}, port=port, address=address, show=show, websocket_origin=origins, title=TITLE,
                    threaded=threaded, **kwargs)


if pn.state.served:  # `panel serve xlstm_viz/dashboard/app.py`
    pn.extension(notifications=True)
    try:
        DashboardApp(model_path=os.environ.get("XLSTM_VIZ_MODEL")).template().servable(title=TITLE)
    except Exception as exc:  # noqa: BLE001 - show why the app could not start instead of a blank page
        pn.pane.Alert(f"xlstm-viz could not start: {type(exc).__name__}: {exc}", alert_type="danger").servable()
