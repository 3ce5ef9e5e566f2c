"""Durations as operators write them: ``90``, ``90s``, ``1m30s``, ``2h``, ``500ms``."""

from __future__ import annotations

import re

from preview_slots.errors import UsageError

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | int | float, *, what: str = "duration",
                   positive: bool = False) -> float:
    """Return seconds. Raises :class:`UsageError` naming ``what`` when the text is not a duration
    (or, with ``positive``, when it is zero)."""
    seconds = _parse(text, what)
    if positive and seconds <= 0:
        raise UsageError(f"{what}: must be more than zero, got {text!r}")
    return seconds


def _parse(text: str | int | float, what: str) -> float:
    if isinstance(text, bool):
        raise UsageError(f"{what}: expected a duration like 30s, 5m or 2h, got {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise UsageError(f"{what}: must not be negative, got {text!r}")
        return float(text)
    raw = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", raw):
        return float(raw)
    pos, total = 0, 0.0
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(raw) or not raw:
        raise UsageError(f"{what}: expected a duration like 30s, 5m or 2h, got {text!r}")
    return total


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s".replace(".0s", "s")
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 120:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
