"""One edit mechanism shared by every wiring kind: versioned, undoable, observable, serialisable.

A wiring describes each edit as a tuple of `Change(target, before, after)`. `target` is a flat tuple of
str/int naming what changed (e.g. ``("synapse", 3, 5)`` or ``("edge", "blocks.0", "blocks.2")``); the
values are JSON scalars or small dicts. The wiring only has to say how to write one value
(`_apply_change`); recording, undo, listener calls and the JSON form of the history live here, so the
neuron, block and cell wirings behave the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Change:
    """One value that changed: `target` went from `before` to `after` (None means absent)."""

    target: tuple
    before: Any
    after: Any

    def inverted(self) -> "Change":
        return Change(self.target, self.after, self.before)

    def to_json(self) -> dict:
        return {"target": list(self.target), "before": self.before, "after": self.after}

    @classmethod
    def from_json(cls, data: dict) -> "Change":
        return cls(tuple(data["target"]), data["before"], data["after"])


@dataclass(frozen=True)
class EditEvent:
    """What a listener receives: the edit `kind`, its `changes` (already applied) and the new `version`.

    For an undo, `kind` is ``"undo"``, `undoes` names the kind of the edit that was reverted and
    `changes` are the reverting changes (before/after swapped, in reverse order).
    """

    kind: str
    changes: tuple[Change, ...]
    version: int
    undoes: str | None = None
    detail: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "changes": [c.to_json() for c in self.changes],
            "version": self.version,
            "undoes": self.undoes,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: dict) -> "EditEvent":
        return cls(
            kind=data["kind"],
            changes=tuple(Change.from_json(c) for c in data["changes"]),
            version=data["version"],
            undoes=data.get("undoes"),
            detail=dict(data.get("detail") or {}),
        )


Listener = Callable[[EditEvent], None]


class Editable:
    """Mixin: `version`, `history`, `undo()`, `add_listener()` on top of a subclass's `_apply_change`."""

    def _init_edits(self) -> None:
        self._history: list[EditEvent] = []
        self._redo: list[EditEvent] = []  # undone edits, newest last; a new edit clears them
        self._listeners: list[Listener] = []
        self._version = 0

    # -- what subclasses provide -------------------------------------------------------------
    def _apply_change(self, target: tuple, value: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _read_target(self, target: tuple) -> Any:  # pragma: no cover - abstract
        """The value `target` holds now (ValueError naming it if there is no such place)."""
        raise NotImplementedError

    def _check_change_value(self, target: tuple, value: Any, where: str) -> None:  # pragma: no cover - abstract
        """ValueError (starting with `where`) unless `value` may be written at `target`."""
        raise NotImplementedError

    # -- public ------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """Increases by one on every edit and every undo; never goes back."""
        return self._version

    @property
    def history(self) -> tuple[EditEvent, ...]:
        """Edits that `undo()` can still revert, oldest first."""
        return tuple(self._history)

    def add_listener(self, listener: Listener) -> Listener:
        """Call `listener(event)` after every edit and undo. Returns the listener (usable as a decorator)."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {listener!r}")
        self._listeners.append(listener)
        return listener

    def remove_listener(self, listener: Listener) -> None:
        try:
            self._listeners.remove(listener)
        except ValueError:
            raise ValueError(f"listener {listener!r} is not registered") from None

    def undo(self, steps: int = 1) -> list[EditEvent]:
        """Revert the last `steps` edits, newest first. Returns the undo events that were emitted."""
        if steps < 0:
            raise ValueError(f"undo steps must be >= 0, got {steps}")
        if steps > len(self._history):
            raise ValueError(f"cannot undo {steps} edits: only {len(self._history)} in the history")
        events = []
        for _ in range(steps):
            edit = self._history.pop()
            reverting = tuple(c.inverted() for c in reversed(edit.changes))
            for change in reverting:
                self._apply_change(change.target, change.after)
            self._version += 1
            self._redos().append(edit)
            event = EditEvent("undo", reverting, self._version, undoes=edit.kind)
            self._notify(event)
            events.append(event)
        return events

    @property
    def redoable(self) -> int:
        """How many undone edits `redo()` can apply again (a new edit clears them)."""
        return len(self._redos())

    def redo(self, steps: int = 1) -> list[EditEvent]:
        """Apply the last `steps` undone edits again, oldest first; each goes back into the history."""
        if steps < 0:
            raise ValueError(f"redo steps must be >= 0, got {steps}")
        redos = self._redos()
        if steps > len(redos):
            raise ValueError(f"cannot redo {steps} edits: only {len(redos)} were undone")
        events = []
        for _ in range(steps):
            edit = redos.pop()
            for change in edit.changes:
                self._apply_change(change.target, change.after)
            self._version += 1
            event = EditEvent(edit.kind, edit.changes, self._version, detail={**edit.detail, "redo": True})
            self._history.append(event)
            self._notify(event)
            events.append(event)
        return events

    def apply_edit(self, kind: str, changes, detail: dict | None = None, where: str = "edit") -> EditEvent | None:
        """Apply an exported edit (`EditEvent.to_json` form) as a new undoable edit.

        Refused, with nothing changed, unless every change's `before` is what the wiring holds now and its `after`
        is a valid value there: an edit recorded on another wiring state is not silently re-targeted.
        """
        import json

        changes = tuple(c if isinstance(c, Change) else Change.from_json(c) for c in changes)
        for i, c in enumerate(changes):
            here = f"{where}: changes[{i}] {list(c.target)}"
            try:
                now = self._read_target(c.target)
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(f"{here}: {exc}") from None
            # compare in JSON form: a saved tuple comes back as a list
            if json.loads(json.dumps(now)) != json.loads(json.dumps(c.before)):
                raise ValueError(f"{here}: expected {c.before!r} before the edit, the wiring holds {now!r}")
            self._check_change_value(c.target, c.after, here)
        return self._commit(kind, changes, **(detail or {}))

    # -- for subclasses ----------------------------------------------------------------------
    def _commit(self, kind: str, changes, **detail) -> EditEvent | None:
        """Apply `changes`, record them as one undoable edit and notify. No-op changes are dropped;
        an edit that changes nothing records nothing and keeps the version."""
        changes = tuple(c for c in changes if c.before != c.after)
        if not changes:
            return None
        self._redos().clear()
        for change in changes:
            self._apply_change(change.target, change.after)
        self._version += 1
        event = EditEvent(kind, changes, self._version, detail=detail)
        self._history.append(event)
        self._notify(event)
        return event

    def _notify(self, event: EditEvent) -> None:
        # Every listener hears every edit even if an earlier one fails; the first failure is re-raised.
        failure = None
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception as exc:  # noqa: BLE001 - re-raised below
                failure = failure or exc
        if failure is not None:
            raise failure

    def _edits_to_json(self) -> dict:
        return {"version": self._version, "history": [e.to_json() for e in self._history]}

    def _edits_from_json(self, data: dict) -> None:
        self._version = int(data.get("version", 0))
        self._history = [EditEvent.from_json(e) for e in data.get("history", [])]
        self._redo = []

    def _redos(self) -> list[EditEvent]:
        if not hasattr(self, "_redo"):  # a wiring unpickled or copied from before redo existed
            self._redo = []
        return self._redo
