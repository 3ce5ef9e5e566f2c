"""Checksums of seed files and snapshot archives, remembered by file identity.

A seed's sha256 (and its meta-command scan) or an archive's sha256 (and its listing) is computed
once per content. Later commands reuse it while every file's identity is unchanged: device,
inode, size, mtime and ctime in nanoseconds, as git's index does. ctime cannot be set from user
space (``touch -r`` and ``cp -p`` set mtime only), so any write or replacement changes the
identity. An identity taken less than :data:`RACY_SECONDS` after the file's last change is not
remembered: a second write within the same timestamp tick would not change it (git calls these
entries "racy").

The store is one small JSON file (``[cache] checksums_file``), written atomically; it is only a
shortcut: unreadable, missing or corrupt means "compute again", never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RACY_SECONDS = 2.0
MAX_ENTRIES = 256


def identity(paths: Sequence[Path], *, kind: str) -> str | None:
    """One key for the exact state of ``paths`` (in order), or None when one of them changed
    too recently to be trusted (or cannot be read)."""
    now = time.time_ns()
    parts: list[object] = [kind]
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            return None
        if now - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_SECONDS * 1e9:
            return None
        parts.append([str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                      st.st_ctime_ns])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


class Remembered:
    """Values keyed by :func:`identity`, in the file ``path`` (None: remember nothing).
    ``read_only`` (a dry run) uses what is there and adds nothing."""

    def __init__(self, path: Path | None, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only

    def get(self, key: str | None) -> dict[str, Any] | None:
        if self.path is None or key is None:
            return None
        value = self._load().get(key)
        return value if isinstance(value, dict) else None

    def put(self, key: str | None, value: dict[str, Any]) -> None:
        if self.path is None or key is None or self.read_only:
            return
        entries = self._load()
        entries.pop(key, None)
        entries[key] = value  # newest last; the oldest go first when over MAX_ENTRIES
        for old in list(entries)[:-MAX_ENTRIES]:
            del entries[old]
        with contextlib.suppress(OSError):  # a shortcut only: not being able to write is fine
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".checksums.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(entries, fh)
                os.replace(tmp, self.path)
            except OSError:
                os.unlink(tmp)
                raise

    def _load(self) -> dict[str, Any]:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def default_checksums_file() -> Path | None:
    """``$XDG_CACHE_HOME/preview-slots/checksums.json`` (``~/.cache`` by default); None for a
    user without a home."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:
            return None
    return Path(base) / "preview-slots" / "checksums.json"
