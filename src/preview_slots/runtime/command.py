"""The slot's start command, ``[runtime] exec_start``.

It is split into words the way a POSIX shell would split it (quotes group words, no variable
expansion, no globbing, no shell), then written out in each manager's own syntax so that the
program gets exactly those words. The application reads its settings (``PORT``, ``DATABASE_URL``...)
from its environment, never from ``$VARIABLES`` in the command line.
"""

from __future__ import annotations

import shlex

from preview_slots.config import Config
from preview_slots.errors import ConfigError


def exec_argv(config: Config) -> list[str]:
    text = config.runtime.exec_start
    where = str(config.path) if config.path else None
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"cannot split into words: {exc}", path=where,
                          key="runtime.exec_start") from exc
    if not words:
        raise ConfigError("is empty: give the program to run and its arguments", path=where,
                          key="runtime.exec_start")
    if words[0][0] in "-@+!:":
        raise ConfigError(f"the program {words[0]!r} must not start with - @ + ! or : "
                          "(systemd reads those as prefixes)", path=where, key="runtime.exec_start")
    for word in words:
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in word):
            raise ConfigError("must not contain control characters", path=where,
                              key="runtime.exec_start")
    return words
