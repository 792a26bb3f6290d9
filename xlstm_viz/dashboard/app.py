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
from xlstm_viz.dashboard.inputs import int_input
from xlstm_viz.dashboard.model_view import ModelView
from xlstm_viz.dashboard.notifications import guarded, notify_error
from xlstm_viz.dashboard.offline import OfflineFast
from xlstm_viz.dashboard.patching_view import PatchingView
from xlstm_viz.dashboard.persistence import SessionStore, new_key, valid_key
from xlstm_viz.dashboard.session import MAX_PROMPT_CHARS, ModelSession
from xlstm_viz.dashboard.trace_view import TraceView
from xlstm_viz.dashboard.wiring_view import WiringView, build_wiring, wiring_from_json, wiring_to_json

TITLE = "xlstm-viz"
PNG_NOTE = ("PNG: use the save tool (disk icon) in each figure's toolbar. Server-side PNG export needs a "
            "webdriver (selenium + chromedriver), which this server does not use.")


def _in_server() -> bool:
    doc = pn.state.curdoc
    return doc is not None and doc.session_context is not None


def document_dispatcher(doc):
    """dispatch(fn) for a ModelSession: run fn as a next-tick callback of `doc` (its thread, under its lock)."""
    from panel.io.state import set_curdoc

    def dispatch(fn):
        if doc.session_context is None:  # the browser tab is gone: nothing left to update
            return
        with set_curdoc(doc):
            pn.state.execute(fn, schedule=True)

    return dispatch


class DashboardApp(pn.viewable.Viewer):
    """Whole app for one browser session (or one notebook)."""

    pairs = param.Integer(default=8, bounds=(1, 64), doc="key-value pairs of the MQAR example")
    example_seed = param.Integer(default=0, bounds=(0, None))

    def __init__(self, model=None, model_path=None, session_key: str | None = None, threaded: bool | None = None,
                 **params):
        super().__init__(**params)
        served = _in_server()
        self.served = served
        if served:
            # Errors and edits are reported as toasts: the app must not depend on its host having called
            # pn.extension(notifications=True) (set inside a session, this is that session's own setting).
            pn.config.notifications = True
        notifications = pn.state.notifications if served else None

        def on_error(exc):
            if notifications is not None:
                notifications.error(f"{type(exc).__name__}: {exc}", duration=8000)

        self.session = ModelSession(model=model, model_path=model_path,
                                    threaded=served if threaded is None else threaded,
                                    on_error=on_error if served else None,
                                    dispatch=document_dispatcher(pn.state.curdoc) if served else None)
        if served:  # stop this session's model thread when the browser tab goes away
            pn.state.on_session_destroyed(lambda ctx: self.session.close())
        self.store = SessionStore(self._session_key(session_key))
        saved = self._load_saved()
        self.wiring_view = WiringView(saved.get("ncps_wiring") or build_wiring("AutoNCP", 28, 4, 6))
        self.model_view = ModelView(self.session)
        self.trace_view = TraceView(session=self.session)
        self.debugger_view = DebuggerView(session=self.session)
        self.diff_view = DiffView(self.session)
        self.patching_view = PatchingView(self.session)
        # The browser cuts a textarea at max_length without a word, so allow one character more than the session
        # accepts: a longer prompt then arrives over the limit and is refused with a message.
        self.prompt_input = pn.widgets.TextAreaInput(label="prompt (task labels / text, or token ids)", height=110,
                                                     max_length=MAX_PROMPT_CHARS + 1)
        self._status = pn.pane.Markdown("")
        self._action = pn.pane.Markdown("")
        self.session.param.watch(self._on_status, ["status", "busy"])
        self.session.param.watch(self._on_action, ["last_action"])
        self.session.param.watch(self._persist, ["edits", "prompt", "example", "baseline_edits"])
        self.wiring_view.param.watch(self._persist, ["version"])
        self._restoring = True  # no saves while the saved state is replayed (a half-replayed save would lose edits)
        self._restore(saved)
        self.session.submit(lambda: None, lambda _: self._restored())  # queued after every restore step
        self.prompt_input.value = self.session.prompt

    # -- session key & persistence -------------------------------------------------------------------
    def _session_key(self, key):
        if key is not None:
            return key
        if not self.served:
            return new_key()
        args = pn.state.session_args or {}
        raw = args.get("session", [b""])[0]
        key = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        if key and not valid_key(key):
            bad, key = key, new_key()
            # The page keeps working on a fresh session; the message names the refused value.
            pn.state.onload(lambda: notify_error(ValueError(
                f"session key {bad!r} in the URL is not valid (1-64 letters, digits, '-' or '_'): "
                f"started a new session {key}")))
            pn.state.onload(lambda: pn.state.location.update_query(session=key))
        elif not key:
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

    def _restore(self, saved: dict) -> None:
        """Rebuild the saved session: the baseline run with the edits it had, then the later edits and a run.

        The MQAR example comes back from its (pairs, seed), so the recall accuracy and the example seed
        are restored too; a typed prompt comes back as text.
        """
        s = self.session
        edits = [tuple(e) for e in saved.get("edits") or []]
        k = min(max(int(saved.get("baseline_edits", 0) or 0), 0), len(edits))  # older saves: unedited baseline
        if edits[:k]:
            s.replay_edits(edits[:k])
        example = saved.get("example")
        try:
            if example:
                self.param.update(pairs=int(example[0]), example_seed=int(example[1]))
                self._example()
            elif saved.get("prompt"):
                s.set_prompt(saved["prompt"])
            else:
                self._example()
        except ValueError as exc:
            if self.served:
                pn.state.onload(lambda: notify_error(exc))
            self.session.mqar_example(self.pairs, self.example_seed)
        if edits[k:]:
            s.replay_edits(edits[k:])
            s.run()

    def _restored(self) -> None:
        self._restoring = False
        self._persist()

    def state_dict(self) -> dict:
        s = self.session
        return {"ncps_wiring": wiring_to_json(self.wiring_view.wiring), "edits": [list(e) for e in s.edits],
                "prompt": s.prompt, "example": list(s.example) if s.example else None,
                "baseline_edits": s.baseline_edits}

    def _persist(self, *events):
        if getattr(self, "_restoring", False):
            return
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

    def _on_action(self, event):
        # Every edit says what it did: in the sidebar and, in a served page, as a toast.
        self._action.object = f"**last edit:** {event.new}" if event.new else ""
        if event.new and self.served and pn.state.notifications is not None:
            pn.state.notifications.info(event.new, duration=6000)

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

    def python_snippet(self) -> str:
        """"Copy as Python": a script that rebuilds the model as edited here and runs the current prompt."""
        from xlstm_viz.dashboard.snippet import python_snippet

        s = self.session
        items = s.on_worker(lambda: list(s.model.interventions.list()))
        return python_snippet(s.edits, items, s.model.source, s.tokens)

    def _show_snippet(self, *_):
        self._snippet.object = f"```python\n{self.python_snippet()}```"

    def export_panel(self):
        wiring = pn.widgets.FileDownload(callback=lambda: io.StringIO(wiring_to_json(self.wiring_view.wiring)),
                                         filename="wiring.json", label="NCPS wiring JSON", color="primary")
        edits = pn.widgets.FileDownload(callback=lambda: io.StringIO(json.dumps([list(e) for e in self.session.edits])),
                                        filename="model_edits.json", label="model wiring edits JSON")
        trace = pn.widgets.FileDownload(callback=guarded(self._trace_npz), filename="trace.npz", label="trace .npz")
        up_wiring = pn.widgets.FileInput(accept=".json")
        up_wiring.param.watch(guarded(self._import_wiring), "value")
        up_edits = pn.widgets.FileInput(accept=".json")
        up_edits.param.watch(guarded(self._import_edits), "value")
        diff_csv = pn.widgets.FileDownload(callback=guarded(lambda: io.StringIO(self.diff_view.diff_csv())),
                                           filename="diff.csv", label="diff tables CSV")
        snippet = pn.widgets.FileDownload(callback=guarded(lambda: io.StringIO(self.python_snippet())),
                                          filename="reproduce_edits.py", label="edits as Python (.py)")
        self._snippet = pn.pane.Markdown("", sizing_mode="stretch_width")
        show = pn.widgets.Button(label="Show as Python (to copy)")
        show.on_click(guarded(self._show_snippet))
        return pn.Column(
            pn.pane.Markdown("#### Export"), wiring, edits, trace, diff_csv, snippet, show, self._snippet,
            pn.pane.Markdown(PNG_NOTE),
            pn.pane.Markdown("#### Import"), pn.pane.Markdown("NCPS wiring JSON"), up_wiring,
            pn.pane.Markdown("model wiring edits JSON"), up_edits,
            pn.pane.Markdown(f"session key `{self.store.key}`: edits are saved to `{self.store.path}`"),
        )

    # -- layout ---------------------------------------------------------------------------------------
    def sidebar(self):
        run = pn.widgets.Button(label="Run prompt", color="primary")
        run.on_click(guarded(self._run_prompt))
        example = pn.widgets.Button(label="MQAR example", color="success")
        example.on_click(guarded(self._example))
        c = self.session.config
        return pn.Column(
            pn.pane.Markdown(f"**model** {c.num_blocks} blocks, {c.num_heads} heads, D={c.embedding_dim}, "
                             f"vocab {c.vocab_size}"),
            self.prompt_input, pn.Row(run, example),
            int_input(self, "pairs", "MQAR pairs"),
            int_input(self, "example_seed", "example seed"),
            self._status, self._action,
        )

    def tabs(self):
        # The Patching tab's widgets are built when it is first opened: with them the page's first render took
        # ~1 s more of server CPU (measured), which every session pays even if it never patches.
        patching = pn.Column(pn.pane.Markdown("_loading the patching view..._"), sizing_mode="stretch_width")
        tabs = pn.Tabs(("Model", self.model_view), ("Over time", self.trace_view), ("Debugger", self.debugger_view),
                       ("Diff", self.diff_view), ("Patching", patching), ("NCPS wiring", self.wiring_view),
                       ("Export", self.export_panel()), dynamic=False, sizing_mode="stretch_width")
        index, built = 4, []

        def opened(event):
            if event.new == index and not built:
                built.append(True)
                patching[:] = [self.patching_view]

        tabs.param.watch(opened, "active")
        return tabs

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
