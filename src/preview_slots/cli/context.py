"""What every handler gets: the parsed config (loaded on first use) and output helpers."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing would slow down `--help`
if TYPE_CHECKING:
    from typing import Any

    from preview_slots.config import Config


class Context:
    # a plain class: importing dataclasses (inspect, ast, dis) would slow down `--help`

    def __init__(self, config_path: str | None, debug: bool = False) -> None:
        self.config_path = config_path
        self.debug = debug
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from preview_slots.config import find_config, load_config

            path = find_config(self.config_path, os.environ.get("PREVIEW_SLOTS_CONFIG"))
            self._config = load_config(path)
        return self._config

    @staticmethod
    def out(text: str = "") -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    @staticmethod
    def err(text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    @staticmethod
    def json(data: Any) -> None:
        import json

        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")
        sys.stdout.flush()


def _jsonable(value: Any) -> Any:
    """Timestamps as ISO 8601 (``2026-12-04T08:38:07.1+00:00``, as allocate's own fields),
    durations in seconds, anything else as text."""
    import datetime

    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return str(value)
