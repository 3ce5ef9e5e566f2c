"""What every handler gets: the parsed config (loaded on first use) and output helpers."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from preview_slots.config import Config


@dataclass
class Context:
    config_path: str | None
    debug: bool = False
    _config: Config | None = field(default=None, repr=False)

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
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()
