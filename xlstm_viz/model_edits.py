"""A model's wiring edits as one ordered, undoable log over its wirings' own histories, and the file that holds them.

The block wiring and every cell wiring keep their own undoable history (`xlstm_viz.wiring.edits.Editable`). A user
action (toggle a connection, sparsify a block) adds one or more entries to one or more of those histories; `EditLog`
records which, in order, so that undo/redo/reset act on whole actions across wirings, and `to_doc()` writes exactly
those history entries. The same document is what the dashboard saves, replays, exports and imports, and what
`apply_edits(model, path_or_doc)` applies to a model in Python:

    {"format": "xlstm-viz-edits", "version": 1,
     "actions": [{"said": "...", "edits": [{"wiring": "block" | "cell", "block": null | 3,
                                            "kind": "set_enabled", "changes": [{target, before, after}], ...}]}]}

"neuron" names the NCP wiring of a neuron block (`model.blocks[block].wiring`, a `cfc` / `ltc` / `ncp_slstm` / `ncp_mlstm` block).

Each change must find the value it says it was changed from (`Editable.apply_edit`); an action that does not is
refused as a whole and the others still apply (`ApplyReport.refused` names it and why).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = "xlstm-viz-edits"
VERSION = 1


def wiring_of(model, wiring: str, block=None):
    """The model's block wiring, or the cell wiring of `block`; errors name the bad value."""
    if wiring == "block":
        return model.block_wiring
    if wiring == "cell":
        n = len(model.cell_wirings)
        if type(block) is not int or not 0 <= block < n:
            raise ValueError(f"block {block!r} is not a block of this model (blocks 0..{n - 1})")
        return model.cell_wirings[block]
    if wiring == "neuron":
        neuron = [j for j, b in enumerate(model.blocks) if getattr(b, "wiring", None) is not None]
        if type(block) is not int or block not in neuron:
            raise ValueError(f"block {block!r} is not a neuron block of this model (neuron blocks: {neuron})")
        return model.blocks[block].wiring
    raise ValueError(f"wiring must be 'block', 'cell' or 'neuron', got {wiring!r}")


def _wirings(model) -> list[tuple[str, int | None, object]]:
    return ([("block", None, model.block_wiring)] + [("cell", j, w) for j, w in enumerate(model.cell_wirings)]
            + [("neuron", j, b.wiring) for j, b in enumerate(model.blocks) if getattr(b, "wiring", None) is not None])


@dataclass(frozen=True)
class Action:
    """One user action: what it did in words, and the (wiring, block, history event) entries it added."""

    said: str
    entries: tuple
    key: tuple = ()  # a short summary for tables and tests, e.g. ("cell", 0, src, dst, -1); not used to apply

    def to_json(self) -> dict:
        return {"said": self.said, "key": list(self.key), "edits": [{"wiring": w, "block": b, **{k: v for k, v in e.to_json().items()
                                                                           if k in ("kind", "changes", "detail")}}
                                             for w, b, e in self.entries]}


@dataclass
class ApplyReport:
    applied: list[str] = field(default_factory=list)  # `said` of each applied action
    refused: list[str] = field(default_factory=list)  # "action 3 (said): why"

    def __bool__(self) -> bool:
        return not self.refused


class EditLog:
    """Ordered user actions over a model's wirings; undo/redo/reset act on whole actions."""

    def __init__(self, model):
        self.model = model
        self.actions: list[Action] = []
        self.undone: list[Action] = []

    def record(self, said: str, fn, key: tuple = ()) -> Action | None:
        """Run `fn()` (which edits wirings through their own methods) as one action; all or nothing."""
        before = [(w, b, len(x.history), x.version) for w, b, x in _wirings(self.model)]
        try:
            fn()
        except Exception:
            self._rollback(before)
            raise
        entries = []
        for w, b, n, _ in before:
            entries += [(w, b, e) for e in wiring_of(self.model, w, b).history[n:]]
        entries.sort(key=lambda t: t[2].version)
        if not entries:
            return None
        action = Action(said, tuple(entries), tuple(key))
        self.actions.append(action)
        self.undone.clear()
        return action

    def _rollback(self, before) -> None:
        for w, b, n, _ in before:
            x = wiring_of(self.model, w, b)
            if len(x.history) > n:
                x.undo(len(x.history) - n)

    def undo(self) -> Action:
        if not self.actions:
            raise ValueError("nothing to undo: no edits since the model was loaded")
        action = self.actions.pop()
        for w, b, e in reversed(action.entries):
            x = wiring_of(self.model, w, b)
            if not x.history or x.history[-1].changes != e.changes:
                raise RuntimeError(f"the {w} wiring was edited outside this log; cannot undo {action.said!r}")
            x.undo(1)
        self.undone.append(action)
        return action

    def redo(self) -> Action:
        if not self.undone:
            raise ValueError("nothing to redo: no undone edits (a new edit clears them)")
        action = self.undone.pop()
        fresh = [(w, b, wiring_of(self.model, w, b).redo(1)[0]) for w, b, _ in action.entries]
        self.actions.append(Action(action.said, tuple(fresh), action.key))
        return action

    def reset(self) -> int:
        """Undo every action; returns how many."""
        n = len(self.actions)
        for _ in range(n):
            self.undo()
        return n

    def to_doc(self, upto: int | None = None) -> dict:
        return {"format": FORMAT, "version": VERSION, "actions": [a.to_json() for a in self.actions[:upto]]}

    def apply_doc(self, doc, start: int = 0, stop: int | None = None) -> ApplyReport:
        """Apply actions[start:stop] of an edits document, each as one action of this log."""
        actions = check_doc(doc)
        report = ApplyReport()
        for i, a in list(enumerate(actions))[start:stop]:
            said = a.get("said") if isinstance(a, dict) else None
            label = f"action {i}" + (f" ({said})" if said else "")
            try:
                if not isinstance(a, dict) or not isinstance(a.get("edits"), list) or not a["edits"]:
                    raise ValueError("an action is {said, edits: [...]} with at least one edit")

                def run(a=a, label=label):
                    for j, e in enumerate(a["edits"]):
                        where = f"{label}: edits[{j}]"
                        if not isinstance(e, dict) or not isinstance(e.get("changes"), list):
                            raise ValueError(f"{where}: an edit is {{wiring, block, kind, changes}}, got {e!r}"[:300])
                        w = wiring_of(self.model, e.get("wiring"), e.get("block"))
                        w.apply_edit(str(e.get("kind", "edit")), e["changes"], e.get("detail") or {}, where=where)

                key = a.get("key")
                self.record(str(said or label), run, tuple(key) if isinstance(key, list) else ("edit", str(said)))
                report.applied.append(str(said or label))
            except (ValueError, KeyError, TypeError) as exc:
                msg = str(exc)
                report.refused.append(msg if msg.startswith(label) else f"{label}: {msg}")
        return report


def check_doc(doc) -> list:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f'an edits file is a JSON object with "format": "{FORMAT}"; got '
                         f"{json.dumps(doc)[:80] if not isinstance(doc, dict) else sorted(doc)}")
    if doc.get("version") != VERSION:
        raise ValueError(f"edits file version {doc.get('version')!r} is not supported (this is version {VERSION})")
    actions = doc.get("actions")
    if not isinstance(actions, list):
        raise ValueError('"actions" of an edits file must be a list')
    return actions


def read_doc(path_or_doc) -> dict:
    if isinstance(path_or_doc, dict):
        return path_or_doc
    path = Path(path_or_doc)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"edits file {path} is not JSON: {exc}") from None


def apply_edits(model, path_or_doc) -> ApplyReport:
    """Apply an exported edits file (a path, or the parsed document) to `model`'s wirings.

    Each action applies whole or not at all; refused actions are listed in the report with the reason, the others
    still apply. The edits join the wirings' own histories, so `model.block_wiring.undo()` etc. revert them.
    """
    return EditLog(model).apply_doc(read_doc(path_or_doc))
