"""Per-session storage so edits, ablations and breakpoints survive a page reload.

A session key (from the `?session=` URL parameter, created on first visit) names one JSON file under
the user's cache dir: $XDG_CACHE_HOME/xlstm-viz/sessions/<key>.json (default ~/.cache/...).

- Saves are atomic (a unique temp file, then `os.replace`) and ordered: the app writes only from its model
  thread, one complete state at a time, and a store refuses a write older than the last one it made.
- A file that cannot be read as a session (invalid JSON, a top-level list, `"prompt": 123`, ...) is moved aside
  to `<key>.json.corrupt-<time>` (never overwritten: it may be the only copy of someone's work); `load` names
  the problem once and the session starts fresh.
- Clean-up (`prune`): when a store opens, session files not written for `MAX_AGE_DAYS` days are deleted, then
  the oldest beyond `MAX_FILES`; moved-aside files count too.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
import uuid
from pathlib import Path

# fullmatch, not match: `$` also matches before a trailing newline, which created `abc\n.json`
_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_AGE_DAYS = 30
MAX_FILES = 1000
FORMAT = 2  # 1: edits as positional tuples (read, then refused edit by edit); 2: the wirings' edit history


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "xlstm-viz" / "sessions"


def valid_key(key) -> bool:
    return isinstance(key, str) and _KEY.fullmatch(key) is not None


def new_key() -> str:
    return uuid.uuid4().hex[:16]


class SessionFileError(ValueError):
    """A saved session file that is not a session; `moved_to` is where it was put aside."""

    def __init__(self, message: str, moved_to: Path | None):
        super().__init__(message)
        self.moved_to = moved_to


def _check_list_of(data: dict, key: str, kind, what: str) -> None:
    value = data.get(key)
    if value is not None and not (isinstance(value, list) and all(isinstance(v, kind) for v in value)):
        raise ValueError(f'"{key}" must be a list of {what}, got {json.dumps(value)[:80]}')


def check_session(data) -> dict:
    """The saved dict if its fields have the types a session needs, else ValueError naming the field."""
    if not isinstance(data, dict):
        raise ValueError(f"the top level must be a JSON object, got a {type(data).__name__}")
    prompt = data.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise ValueError(f'"prompt" must be text, got {json.dumps(prompt)[:80]}')
    example = data.get("example")
    if example is not None and not (isinstance(example, list) and len(example) == 2
                                    and all(isinstance(v, int) and not isinstance(v, bool) for v in example)):
        raise ValueError(f'"example" must be [pairs, seed] (two integers), got {json.dumps(example)[:80]}')
    wiring = data.get("ncps_wiring")
    if wiring is not None and not isinstance(wiring, str):
        raise ValueError(f'"ncps_wiring" must be the wiring\'s JSON text, got a {type(wiring).__name__}')
    _check_list_of(data, "edits", (list, dict), "edits")
    _check_list_of(data, "redo", dict, "edit actions")
    _check_list_of(data, "ablations", dict, "{probe, kind, value, tokens} objects")
    _check_list_of(data, "breakpoints", dict, "{probe, condition, token} objects")
    base = data.get("baseline_edits", 0)
    if not isinstance(base, int) or isinstance(base, bool) or base < 0:
        raise ValueError(f'"baseline_edits" must be a count >= 0, got {json.dumps(base)[:80]}')
    return data


def prune(root: Path, max_age_days: float = MAX_AGE_DAYS, max_files: int = MAX_FILES, keep=()) -> list[Path]:
    """Delete session files older than `max_age_days`, then the oldest beyond `max_files`; returns the deleted."""
    if not root.is_dir():
        return []
    files = []
    for p in root.iterdir():
        if p.name in keep or not (p.suffix == ".json" or ".json.corrupt-" in p.name):
            continue
        try:
            files.append((p.stat().st_mtime, p))
        except OSError:  # removed meanwhile by another server
            continue
    files.sort(reverse=True)  # newest first
    cutoff = time.time() - max_age_days * 86400
    doomed = [p for i, (t, p) in enumerate(files) if t < cutoff or i >= max_files]
    for p in doomed:
        try:
            p.unlink()
        except OSError:
            pass
    return doomed


class SessionStore:
    def __init__(self, key: str, root: Path | None = None, clean: bool = True):
        if not valid_key(key):
            raise ValueError(f"session key {key!r} must be 1-64 letters, digits, '-' or '_'")
        self.key = key
        self.root = root or cache_dir()
        self.path = self.root / f"{key}.json"
        self._lock = threading.Lock()
        self._last_revision = -1
        if clean:
            prune(self.root, keep={self.path.name})

    def load(self) -> dict:
        """The saved state ({} if none). A file that is not a session is moved aside: SessionFileError says where."""
        if not self.path.is_file():
            return {}
        try:
            return check_session(json.loads(self.path.read_text()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
            self.move_aside(f"saved session {self.path.name} is not a session file ({exc})")

    def move_aside(self, why: str):
        """Put the file aside (it may be the only copy of someone's work) and raise SessionFileError(why)."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}")
        try:
            os.replace(self.path, aside)
        except OSError:
            aside = None
        where = f"it was moved to {aside}" if aside else "it could not be moved aside"
        raise SessionFileError(f"{why}; {where} and this session starts fresh", aside)

    def save(self, data: dict, revision: int | None = None) -> bool:
        """Write `data` atomically; a `revision` not newer than the last written one is dropped (returns False)."""
        text = json.dumps({**data, "format": FORMAT})
        with self._lock:
            if revision is not None:
                if revision <= self._last_revision:
                    return False
                self._last_revision = revision
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # a unique temp file per write, then replace(): a reload never reads half a file
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.stem + ".", suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, self.path)
        return True
