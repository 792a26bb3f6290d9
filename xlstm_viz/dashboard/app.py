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
import threading
import weakref
from pathlib import Path

import panel as pn

from xlstm_viz.dashboard import offline as _offline  # noqa: F401  (notebook comm updates link no CDN stylesheet)
from xlstm_viz.dashboard import write_queue as _write_queue  # noqa: F401  (no queued page update left unsent)
import param

from xlstm_viz.dashboard import page_patches, source_updates
from xlstm_viz.dashboard.debugger_view import DebuggerView
from xlstm_viz.dashboard.diff_view import DiffView
from xlstm_viz.dashboard.inputs import int_input
from xlstm_viz.dashboard.model_view import ModelView
from xlstm_viz.dashboard.notifications import EditToast, guarded, notify_error, page_text
from xlstm_viz.dashboard.offline import OfflineFast
from xlstm_viz.dashboard.patching_view import PatchingView
from xlstm_viz.dashboard.persistence import SessionFileError, SessionStore, new_key, valid_key
from xlstm_viz.dashboard.session import MAX_PROMPT_CHARS, ModelSession
from xlstm_viz.dashboard.tab_feed import TabFeed
from xlstm_viz.dashboard.trace_view import TraceView
from xlstm_viz.dashboard.wiring_view import WiringView, build_wiring, wiring_from_json, wiring_to_json

TITLE = "xlstm-viz"
TAB_LOADING = "loading the {} view..."  # what a tab shows until its views are put in (its first show)
FED_TABS = ("Model", "Over time", "Debugger", "Diff", "Patching", "NCPS (live model)")  # tabs with session views
PNG_NOTE = ("Figures as SVG / PNG: the buttons under the block and cell graphs (Model), the probe heatmap (Over "
            "time) and the diff plot (Diff) draw the current result on the server with matplotlib "
            "(`pip install 'xlstm-viz[export]'`); each figure's save tool (disk icon) saves what the browser shows.")


def _in_server() -> bool:
    doc = pn.state.curdoc
    return doc is not None and doc.session_context is not None


def document_dispatcher(doc):
    """dispatch(fn) for a ModelSession: run fn as one next-tick callback of `doc` (its thread, under its lock),
    holding the document so that all the view updates of one result go to the browser as one message."""
    from panel.io.state import set_curdoc

    def dispatch(fn):
        if doc.session_context is None:  # the browser tab is gone: nothing left to update
            return

        def held():
            with source_updates.held(doc):
                fn()

        with set_curdoc(doc):
            pn.state.execute(held, schedule=True)

    return dispatch


# Session keys open in this process -> the app using it: a second tab on the same key works on a copy under a new
# key, so that the two tabs never overwrite each other's saved edits.
_open_keys: "weakref.WeakValueDictionary[str, DashboardApp]" = weakref.WeakValueDictionary()
_open_keys_lock = threading.Lock()


def _claim_key(key: str, app) -> bool:
    """True if `key` was free (now held by `app`); False if a live tab holds it.

    A reloaded tab's old session lingers on the server for a while after its websocket closed (Bokeh destroys
    unused sessions about 15 s later); it no longer counts, and it stops saving so that it cannot overwrite the
    file the new tab restores from.
    """
    with _open_keys_lock:
        other = _open_keys.get(key)
        if other is not None and other is not app and other.live():
            return False
        if other is not None and other is not app:
            other.session.store = None  # superseded: the new tab owns the file now
        _open_keys[key] = app
        return True


class DashboardApp(pn.viewable.Viewer):
    """Whole app for one browser session (or one notebook)."""

    pairs = param.Integer(default=8, bounds=(1, 64), doc="key-value pairs of the MQAR example")
    example_seed = param.Integer(default=0, bounds=(0, None))

    def __init__(self, model=None, model_path=None, session_key: str | None = None, threaded: bool | None = None,
                 **params):
        if model is not None and model_path is not None:  # the session would run `model` and be labelled model_path
            raise ValueError(f"give the dashboard a model or a model_path, not both (model_path={model_path!r})")
        super().__init__(**params)
        served = _in_server()
        self.served = served
        self._doc = pn.state.curdoc if served else None
        self._loaded = False
        if served:
            pn.state.onload(lambda: setattr(self, "_loaded", True))
        if served:
            # Errors and edits are reported as toasts: the app must not depend on its host having called
            # pn.extension(notifications=True) (set inside a session, this is that session's own setting).
            pn.config.notifications = True
        notifications = pn.state.notifications if served else None
        if served and model is None and model_path is None:  # ?model=hybrid picks a bundled model
            raw = (pn.state.session_args or {}).get("model", [b""])[0]
            name = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
            if name:
                from xlstm_viz.demo import DEMOS

                if name not in DEMOS:
                    raise ValueError(f"?model={name!r} in the URL: bundled models are {sorted(DEMOS)}")
                model_path = name
        self.model_name = model_path if model_path is not None else ("demo" if model is None else None)

        def on_error(exc):
            if notifications is not None:
                notifications.error(page_text(f"{type(exc).__name__}: {exc}"), duration=8000)

        self._notices: list[str] = []  # said once, when the page has loaded (or kept for a notebook to read)
        self.store = self._open_store(self._session_key(session_key))
        saved = self._load_saved()
        self.session = ModelSession(model=model, model_path=model_path,
                                    threaded=served if threaded is None else threaded,
                                    on_error=on_error if served else None,
                                    dispatch=document_dispatcher(pn.state.curdoc) if served else None)
        if served:  # stop this session's model thread when the browser tab goes away
            pn.state.on_session_destroyed(lambda ctx: self.close())
        self.wiring_view = WiringView(saved.get("ncps_wiring") or build_wiring("AutoNCP", 28, 4, 6))
        # Each tab's views see the session through a feed of their own, held while the tab is hidden (tab_feed.py)
        self.feeds = {name: TabFeed(self.session) for name in FED_TABS}
        self.model_view = ModelView(self.feeds["Model"])
        self.trace_view = TraceView(session=self.feeds["Over time"])
        self.debugger_view = DebuggerView(session=self.feeds["Debugger"])
        self.diff_view = DiffView(self.feeds["Diff"])
        from xlstm_viz.dashboard.ncps_live import LiveNCPSView, neuron_blocks

        self.ncps_live = (LiveNCPSView(self.feeds["NCPS (live model)"]) if neuron_blocks(self.session.model)
                          else None)
        self.patching_view = PatchingView(self.feeds["Patching"])
        # The browser cuts a textarea at max_length without a word, so allow one character more than the session
        # accepts: a longer prompt then arrives over the limit and is refused with a message.
        self.prompt_input = pn.widgets.TextAreaInput(label="prompt (task labels / text, or token ids)", height=110,
                                                     max_length=MAX_PROMPT_CHARS + 1)
        self._status = pn.pane.Markdown("")
        self._action = pn.pane.Markdown("")
        self.toast = EditToast()
        self.session.param.watch(self._on_status, ["status", "busy"])
        self.session.param.watch(self._on_action, ["last_action"])
        self.session.param.watch(self._on_result, ["result"])
        self.session.param.watch(self._on_prompt, ["prompt"])
        self.wiring_view.param.watch(self._persist_ncps, ["version"])
        # From here on the model thread writes the session file after every command, in command order (a key that
        # another page may still hold is saved to only once that is settled, _settle_key).
        self.session.store = None if getattr(self, "_unsettled_key", None) else self.store
        if saved.get("example"):
            self.param.update(pairs=int(saved["example"][0]), example_seed=int(saved["example"][1]))
        extra = {"ncps_wiring": saved["_ncps_json"]} if saved.get("ncps_wiring") is not None else {}
        self.session.restore({k: v for k, v in saved.items() if k not in ("ncps_wiring", "_ncps_json")},
                             fallback_example=(self.pairs, self.example_seed), extra=extra)
        self.prompt_input.value = self.session.prompt
        for text in self._notices:
            self._notify_later(text)

    def close(self) -> None:
        """Give the model thread back and free the session key (the browser tab went away)."""
        self.session.close()

    @property
    def closed(self) -> bool:
        session = getattr(self, "session", None)
        return session is not None and session.closed

    def live(self) -> bool:
        """Open, and (served) its page still connected or still connecting."""
        if self.closed:
            return False
        doc = getattr(self, "_doc", None)
        if doc is None or not self._loaded:
            return True
        server_session = getattr(doc.session_context, "_session", None) if doc.session_context else None
        return server_session is not None and server_session.connection_count > 0

    # -- session key & persistence -------------------------------------------------------------------
    def _notify_later(self, text: str) -> None:
        if self.served:
            pn.state.onload(lambda: pn.state.notifications.warning(page_text(text), duration=12000)
                            if pn.state.notifications is not None else None)

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

    def _open_store(self, key: str) -> SessionStore:
        """The store for `key`, or, if another live tab has that key, a copy of its saved file under a new key."""
        if _claim_key(key, self):
            return SessionStore(key)
        if self.served:
            # Maybe a reload: the browser closes the old page's websocket only when this page's document arrives,
            # after this session was built. Read the file now; decide when this page has connected (_settle_key).
            self._unsettled_key = key
            pn.state.onload(self._settle_key)
            return SessionStore(key, clean=False)
        return self._copy_store(key)

    def _settle_key(self) -> None:
        """This page has connected: keep the key if the page that held it is gone (a reload), else work on a copy."""
        key, self._unsettled_key = self._unsettled_key, None
        if not _claim_key(key, self):
            said = len(self._notices)
            self.store = self._copy_store(key, loaded=True)
            for text in self._notices[said:]:
                if pn.state.notifications is not None:
                    pn.state.notifications.warning(page_text(text), duration=12000)
        self.session.store = self.store  # saved from here on (the restore ran unsaved), in command order
        self.session.submit(lambda: self.session._save(self.session._w))

    def _copy_store(self, key: str, loaded: bool = False) -> SessionStore:
        """A copy of `key`'s saved file under a new key (`loaded`: the page has connected, the URL changes now)."""
        original = SessionStore(key, clean=False)
        copy_key = new_key()
        _claim_key(copy_key, self)
        store = SessionStore(copy_key, clean=False)
        if original.path.is_file():
            try:
                store.path.parent.mkdir(parents=True, exist_ok=True)
                store.path.write_bytes(original.path.read_bytes())
            except OSError:
                pass
        self._notices.append(f"session {key} is open in another tab: this tab works on a copy, saved as session "
                             f"{copy_key} (neither tab overwrites the other)")
        if loaded and pn.state.location is not None:
            pn.state.location.update_query(session=copy_key)
        elif self.served:
            pn.state.onload(lambda: pn.state.location.update_query(session=copy_key))
        return store

    def _load_saved(self) -> dict:
        try:
            data = self.store.load()
        except SessionFileError as exc:
            self._notices.append(str(exc))
            return {}
        if data.get("ncps_wiring"):
            try:
                text = data["ncps_wiring"]
                data["ncps_wiring"], data["_ncps_json"] = wiring_from_json(text), text
            except (ValueError, TypeError, KeyError) as exc:
                self._notices.append(f"saved NCPS wiring refused ({exc}); the default wiring is shown, the other "
                                     "saved state comes back")
                data.pop("ncps_wiring")
        return data

    def _on_result(self, event):
        r = event.new
        if r is not None and r.refused:
            text = "not restored: " + "; ".join(r.refused)
            if self.served and pn.state.notifications is not None:
                pn.state.notifications.warning(page_text(text[:2000]), duration=15000)
            self._notices.append(text)

    def _on_prompt(self, event):
        self.prompt_input.value = event.new

    def state_dict(self) -> dict:
        return self.session.on_worker(lambda: self.session.state_dict())

    def _persist_ncps(self, *events):
        self.session.set_extra(ncps_wiring=wiring_to_json(self.wiring_view.wiring))

    # -- prompt ---------------------------------------------------------------------------------------
    def _example(self, *_):
        self.session.mqar_example(self.pairs, self.example_seed)

    def _run_prompt(self, *_):
        self.session.set_prompt(self.prompt_input.value)

    def _on_status(self, *_):
        s = self.session
        self._status.object = ("**running...**" if s.busy else page_text(s.status)) + (
            f"  \nrecall accuracy {s.accuracy:.3f}" if s.accuracy is not None else "")

    def _on_action(self, event):
        # Every edit says what it did: in the sidebar and, in a served page, as a toast.
        self._action.object = f"**last edit:** {page_text(event.new)}" if event.new else ""
        if event.new and self.served:
            self.toast.show(event.new)

    # -- export / import --------------------------------------------------------------------------------
    def _trace_npz(self):
        if self.session.trace is None:
            raise ValueError("no run yet: nothing to export")
        with tempfile.TemporaryDirectory() as d:
            path = self.session.trace.save(Path(d) / "trace.npz")
            return io.BytesIO(Path(path).read_bytes())

    def _import_wiring(self, event):
        if event.new:
            self.wiring_view.load_json(event.new.decode("utf-8", errors="replace"))

    def _import_edits(self, event):
        if event.new:
            try:
                doc = json.loads(event.new.decode("utf-8", errors="replace"))
            except json.JSONDecodeError as exc:
                raise ValueError(f"edits file is not JSON: {exc}") from None
            from xlstm_viz.model_edits import check_doc

            check_doc(doc)  # a file that is not an edits file is refused here, with the reason
            self.session.import_edits(doc)

    def python_snippet(self) -> str:
        """"Copy as Python": a script that rebuilds the model as edited here and runs the current prompt."""
        from xlstm_viz.dashboard.snippet import python_snippet

        s = self.session
        items = s.on_worker(lambda: list(s.model.interventions.list()))
        return python_snippet(s.edits_doc(), items, s.model.source, s.tokens)

    def _show_snippet(self, *_):
        self._snippet.object = f"```python\n{self.python_snippet()}```"

    def export_panel(self):
        wiring = pn.widgets.FileDownload(callback=lambda: io.StringIO(wiring_to_json(self.wiring_view.wiring)),
                                         filename="wiring.json", label="NCPS wiring JSON", color="primary")
        edits = pn.widgets.FileDownload(callback=lambda: io.StringIO(json.dumps(self.session.edits_doc(), indent=1)),
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
            pn.pane.Markdown("model wiring edits JSON (`xlstm_viz.apply_edits(model, path)` applies it in Python)"),
            up_edits,
            pn.pane.Markdown(f"session key `{self.store.key}`: edits are saved to `{self.store.path}`"),
        )

    # -- layout ---------------------------------------------------------------------------------------
    def sidebar(self):
        run = pn.widgets.Button(label="Run prompt", color="primary")
        run.on_click(guarded(self._run_prompt))
        example = pn.widgets.Button(label="MQAR example", color="success")
        example.on_click(guarded(self._example))
        c = self.session.config
        from xlstm_viz.demo import DEMOS

        other = [] if self.model_name in DEMOS else ["(the model this app was given)"]
        choose = pn.widgets.Select(label="bundled model", options=other + sorted(DEMOS),
                                   value=self.model_name if self.model_name in DEMOS else other[0], width=300)

        def pick(event):  # a model is per page: open the page again on the chosen one (a fresh session)
            if event.new in DEMOS and event.new != self.model_name and pn.state.location is not None:
                pn.state.location.param.update(reload=True)
                pn.state.location.search = f"?model={event.new}"

        choose.param.watch(pick, "value")
        return pn.Column(
            choose,
            pn.pane.Markdown(f"**model** {c.num_blocks} blocks, {c.num_heads} heads, D={c.embedding_dim}, "
                             f"vocab {c.vocab_size}"),
            self.prompt_input, pn.Row(run, example),
            int_input(self, "pairs", "MQAR pairs"),
            int_input(self, "example_seed", "example seed"),
            self.edit_buttons(), self._status, self._action,
        )

    def edit_buttons(self):
        """Undo / Redo / Reset of the model's wiring edits, in the sidebar so that every tab has them."""
        buttons = {}
        for label, fn in (("Undo edit", self.session.undo), ("Redo edit", self.session.redo),
                          ("Reset edits", self.session.reset_edits)):
            b = pn.widgets.Button(label=label, width=88, disabled=True)  # three fit the 330 px sidebar
            b.on_click(guarded(lambda e, fn=fn: fn()))
            buttons[label] = b

        def sync(*_):
            r = self.session.result
            buttons["Undo edit"].disabled = buttons["Reset edits"].disabled = not (r and r.undoable)
            buttons["Redo edit"].disabled = not (r and r.redoable)

        self.session.param.watch(sync, ["result"])
        sync()
        return pn.Row(*buttons.values())

    def tabs(self):
        live = [("NCPS (live model)", self.ncps_live)] if self.ncps_live is not None else []
        builder = pn.Column(pn.pane.Markdown("#### Detached NCPS wiring builder: not connected to the loaded model "
                                             "(build, edit and export ncps wirings here)"), self.wiring_view,
                            sizing_mode="stretch_width")
        from xlstm_viz.dashboard.intro import intro_card

        first = pn.Column(intro_card(self.session.model, self.session.task), self.model_view,
                          sizing_mode="stretch_width")  # the first screen says what the model does
        contents = [("Model", first), ("Over time", self.trace_view), ("Debugger", self.debugger_view),
                    ("Diff", self.diff_view), ("Patching", self.patching_view), *live,
                    ("NCPS builder (detached)", builder), ("Export", self.export_panel())]
        # A tab's views go into the page when the tab is first shown, and then stay (they are not rebuilt on the next
        # show, as Panel's dynamic=True would: 0.6-1.4 s of server CPU per switch, measured). With every tab in the
        # first render, every session paid for the hidden tabs' figures even if it only looked at the first screen
        # (page open -> first run shown, README "Dashboard").
        holders = {name: pn.Column(pn.pane.Markdown(f"_{TAB_LOADING.format(name)}_"), sizing_mode="stretch_width")
                   for name, _ in contents[1:]}
        tabs = pn.Tabs(contents[0], *((name, holders[name]) for name, _ in contents[1:]), dynamic=False,
                       sizing_mode="stretch_width")
        names, content = [name for name, _ in contents], dict(contents)

        def show_active():
            # only the shown tab's views follow each result; a hidden tab's catch up when it is shown
            active = names[tabs.active] if 0 <= tabs.active < len(names) else None
            holder = holders.pop(active, None)
            if holder is not None:
                holder[:] = [content[active]]
            for name, feed in self.feeds.items():
                feed.shown = name == active

        def on_active(*_):
            # a Panel event callback runs under the document's lock: the caught-up views go out as one message
            with source_updates.held(pn.state.curdoc):
                show_active()

        tabs.param.watch(on_active, "active")
        show_active()
        return tabs

    def template(self):
        # the toast sits in the header: a main-area card contains fixed-position children (CSS `contain`).
        # No busy indicator: Panel's default is one LoadingSpinner shared by every template of the process and
        # driven by the process-wide `pn.state.busy`, so each click in any session spun (two patches) the
        # spinner of every open page, and the server sent them: work per click grew with the number of sessions.
        # The sidebar's status line says "running..." for this session's own commands.
        if self._doc is not None:
            page_patches.install(self._doc)  # BokehJS's per-paint stylesheet rewrites (page_patches.py)
        template = pn.template.FastListTemplate(title=TITLE, sidebar=[self.sidebar()], main=[self.tabs()],
                                                header=[self.toast.pane], sidebar_width=330, accent="#1f77b4",
                                                design=OfflineFast, busy_indicator=None)
        return _one_walk_server_doc(template)

    def __panel__(self):
        return pn.Row(pn.Column(self.sidebar(), width=330), self.tabs(), self.toast.pane, sizing_mode="stretch_width")


def _one_walk_server_doc(template):
    """The template, whose server_doc adds its roots to a frozen document.

    The template adds seven roots (main, sidebar, header, modal, location, ...) one by one, and after each Bokeh
    re-walks every model of the document (~1,600) to update its model index: nine walks, about half of a new
    session's page build on the server (4.1 -> 2.0 s on the 2-core machine, `benchmarks/dashboard_breakdown.py`).
    Frozen, the index is updated once, when the last root is in. Panel serves a template through
    `template.server_doc(doc, title, location)`, so the instance's own method is what it calls."""
    plain = template.server_doc

    def server_doc(doc=None, title=None, location=True):
        from bokeh.io import curdoc

        doc = curdoc() if doc is None else doc
        with doc.models.freeze():
            return plain(doc, title, location)

    template.server_doc = server_doc
    return template


def dashboard(model=None, model_path=None):
    """The whole app inline (Jupyter): call `pn.extension()` first."""
    return DashboardApp(model=model, model_path=model_path, threaded=False)


def serve(model_path=None, port: int = 5006, show: bool = False, address: str = "localhost", threaded: bool = False,
          blas_threads: int | None = 1, **kwargs):
    """Serve the app at http://ADDRESS:PORT/ (localhost only by default); blocks unless threaded=True.

    blas_threads: OpenBLAS threads for this process (None leaves OpenBLAS's default). One, because the served
    models' products are small, and idle OpenBLAS workers spin after each of them on cores the browsers need."""
    if blas_threads is not None:
        from xlstm_viz import blas
        blas.set_threads(blas_threads)
    # Load the model before the server starts: a missing or broken checkpoint is the caller's error, not a page that
    # fails in every browser session (the sessions then take views of this very load).
    from xlstm_viz.dashboard.session import shared_model

    shared_model(model_path)
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
