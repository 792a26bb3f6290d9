"""Per-session storage so wiring edits survive a page reload.

A session key (from the `?session=` URL parameter, created on first visit) names one JSON file under
the user's cache dir: $XDG_CACHE_HOME/xlstm-viz/sessions/<key>.json (default ~/.cache/...).
"""

from __future__ import annotations

import json
import os
import tempfile
import re
import uuid
from pathlib import Path

_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "xlstm-viz" / "sessions"


def valid_key(key) -> bool:
    return isinstance(key, str) and bool(_KEY.match(key))


def new_key() -> str:
    return uuid.uuid4().hex[:16]


class SessionStore:
    def __init__(self, key: str, root: Path | None = None):
        if not _KEY.match(key or ""):
            raise ValueError(f"session key {key!r} must be 1-64 letters, digits, '-' or '_'")
        self.key = key
        self.path = (root or cache_dir()) / f"{key}.json"

    def load(self) -> dict:
        if not self.path.is_file():
            return {}
        try:
            return json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"saved session {self.path} is unreadable ({exc}); delete it to start fresh") from None

    def save(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A unique temp file per write: two saves of one session can overlap (UI thread and model thread), and a shared
        # temp name made the second rename fail. replace() is atomic, so a reload never reads half a file.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.stem + ".", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(data))
        os.replace(tmp, self.path)
