"""What one tab's views see of the session: its state passed on while the tab is shown, held while it is hidden.

Every result used to update every tab's views, shown or not: on the Diff tab a toggle repainted 13 figures, 11 of
them on hidden tabs (counted in the page), and the hidden Over-time view's refresh was the largest share of the
server's work per click (py-spy, `benchmarks/dashboard_breakdown.py`). A `TabFeed` stands in for the `ModelSession`
in one tab's views: it has the session's parameters and passes every change on while its tab is shown; while the
tab is hidden it only notes which changed, and passes the latest values on in one batch when the tab is shown again.
Commands and everything else (`feed.ablate(...)`, `feed.model`) go to the session itself: data still flows one way,
session -> feed -> views.
"""

from __future__ import annotations

import param

from xlstm_viz.dashboard.session import ModelSession

# the session's state parameters, mirrored one to one
NAMES = tuple(n for n in ModelSession.param if n != "name")


class _Mirror(param.Parameterized):
    pass


for _n in NAMES:  # one untyped parameter per session parameter: the session has checked the values already
    _Mirror.param.add_parameter(_n, param.Parameter(default=None))


class TabFeed(_Mirror):
    """The session as one tab's views see it (see the module docstring)."""

    shown = param.Boolean(default=True, doc="while False, changes are held (stale) and passed on when shown again")

    def __init__(self, session: ModelSession, **params):
        super().__init__(**params)
        self._session = session
        self._stale: set[str] = set()
        with param.discard_events(self):
            self.param.update({n: getattr(session, n) for n in NAMES})
        session.param.watch(self._on_session, list(NAMES))

    def __getattr__(self, name):
        # only reached for what the feed itself lacks: the session's commands, model, config...
        if name.startswith("__") or name == "_session":
            raise AttributeError(name)
        return getattr(self._session, name)

    @property
    def stale(self) -> tuple[str, ...]:
        """The session parameters that changed while the tab was hidden."""
        return tuple(sorted(self._stale))

    def _on_session(self, *events):
        if self.shown:
            self.param.update({e.name: e.new for e in events})
        else:
            self._stale.update(e.name for e in events)

    @param.depends("shown", watch=True)
    def _catch_up(self):
        if self.shown and self._stale:
            names, self._stale = self._stale, set()
            self.param.update({n: getattr(self._session, n) for n in names})
