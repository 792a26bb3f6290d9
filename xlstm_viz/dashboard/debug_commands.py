"""The debugger's commands, dispatched in one place for the app's model thread and for notebooks."""

from __future__ import annotations

COMMANDS = ("step", "step_over", "step_token", "continue", "reset", "add_breakpoint", "remove_breakpoint")


def run_command(dbg, action: str, **kwargs):
    """Apply `action` to the Debugger `dbg`; returns the StepEvent where it stands afterwards (or None)."""
    if action == "step":
        return dbg.step()
    if action == "step_over":
        return dbg.step_over()
    if action == "step_token":
        return dbg.step_token()
    if action == "continue":
        return dbg.continue_()
    if action == "reset":
        dbg.reset()
        return dbg.current
    if action == "add_breakpoint":
        dbg.add_breakpoint(**kwargs)
        return dbg.current
    if action == "remove_breakpoint":
        if "id" not in kwargs:
            raise ValueError("remove_breakpoint needs the breakpoint's id (id=...)")
        dbg.remove_breakpoint(kwargs["id"])
        return dbg.current
    raise ValueError(f"unknown debugger action {action!r}; actions: {', '.join(COMMANDS)}")


def summary(dbg, reason: str | None = None) -> dict:
    """Breakpoints, stop reason, finished and step count of `dbg` (None: no debugger yet)."""
    return {"breakpoints": [(bp.id, bp.describe(), bp.hits) for bp in dbg.breakpoints] if dbg else [],
            "stop_reason": reason if reason is not None else (dbg.stop_reason if dbg else "start"),
            "finished": False if reason is not None or dbg is None else dbg.finished,
            "steps": 0 if reason is not None or dbg is None else len(dbg.history)}
