"""Per-slot environment files, in systemd's ``EnvironmentFile=`` syntax.

One file per slot (``<runtime.env_dir>/<instance>.env``) holds everything the slot's service
needs: ``PREVIEW_SLOT``, ``PORT``, ``HOST``, ``DATABASE_URL`` (the slot's own database),
``STATIC_ROOT``, ``PUBLIC_URL``, then ``[env]`` extras for every slot and the slot's own extras.
systemd reads it for the unit; under supervisord, :mod:`preview_slots.runtime.envexec` reads the
same file with :func:`parse`, which follows systemd's parser, so both managers see one format.

A value is written bare when it holds only harmless characters, else in double quotes with
``\\ " ` $`` escaped. systemd does no variable expansion in these files, so ``$HOME`` stays
literal. Newline, carriage return, NUL and other control characters (tab excepted) are refused:
they cannot round-trip through every reader of the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from preview_slots.errors import ConfigError, RuntimeFailed
from preview_slots.redact import register_secret

if TYPE_CHECKING:
    from preview_slots.config import Config, Slot

CORE_KEYS = ("PREVIEW_SLOT", "PORT", "HOST", "DATABASE_URL", "STATIC_ROOT", "PUBLIC_URL")
"""Set by preview-slots for every slot; configuration cannot override them."""

KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SECRET_KEY_RE = re.compile(r"PASSW(OR)?D|SECRET|TOKEN|PRIVATE|CREDENTIAL|API_?KEY|AUTH", re.I)
"""Names whose values are secrets: registered for masking in every log line and plan."""

_BARE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
_NEED_ESCAPE = '"\\`$'  # systemd's SHELL_NEED_ESCAPE: unescaped inside double quotes
_NEWLINE = "\n\r"
_WHITESPACE = " \t\n\r"
_COMMENTS = "#;"
HEADER = (
    "# Managed by preview-slots (`preview-slots provision`); edits here are overwritten.\n"
    "# systemd EnvironmentFile syntax. Environment of preview slot {slot}.\n"
)


def value_problem(value: str) -> str | None:
    """Why ``value`` cannot go into an env file, or None when it can."""
    for char, name in (("\n", "a newline"), ("\r", "a carriage return"), ("\x00", "a NUL byte")):
        if char in value:
            return (f"contains {name}, which an EnvironmentFile cannot carry; put the text in a "
                    "file and pass its path instead")
    for char in value:
        if (ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F:
            return f"contains the control character U+{ord(char):04X}"
        if 0xD800 <= ord(char) <= 0xDFFF:
            return "is not valid UTF-8"
    return None


def quote(value: str) -> str:
    """``value`` as systemd's parser will read it back exactly."""
    if _BARE.fullmatch(value):
        return value
    escaped = "".join("\\" + c if c in _NEED_ESCAPE else c for c in value)
    return f'"{escaped}"'


def render(env: Mapping[str, str], *, slot: str) -> str:
    """The file's text. Keys and values must already be checked (see :func:`slot_environment`)."""
    lines = [HEADER.format(slot=slot)]
    lines += [f"{key}={quote(value)}\n" for key, value in env.items()]
    return "".join(lines)


def parse(text: str) -> dict[str, str]:
    """Read an env file the way systemd does (``parse_env_file_internal``, systemd 252).

    Comments start with ``#`` or ``;`` where a key could start; a bare value ends at the end of
    the line with trailing whitespace dropped and ``\\x`` meaning ``x``; single quotes keep
    everything; double quotes unescape only ``\\ " ` $``; a backslash before a newline joins
    lines. The last assignment of a key wins; a line without ``=`` is ignored.
    """
    env: dict[str, str] = {}
    state = "PRE_KEY"
    key: list[str] = []
    value: list[str] = []
    key_ws: int | None = None  # index where trailing whitespace of the key starts
    value_ws: int | None = None

    def push(trim_value: bool) -> None:
        name = "".join(key[:key_ws] if key_ws is not None else key)
        text = value[:value_ws] if (trim_value and value_ws is not None) else value
        env[name] = "".join(text)

    for c in text:
        if state == "PRE_KEY":
            if c in _COMMENTS:
                state = "COMMENT"
            elif c not in _WHITESPACE:
                state, key, key_ws = "KEY", [c], None
        elif state == "KEY":
            if c in _NEWLINE:
                state, key = "PRE_KEY", []
            elif c == "=":
                state, value, value_ws = "PRE_VALUE", [], None
            else:
                if c not in _WHITESPACE:
                    key_ws = None
                elif key_ws is None:
                    key_ws = len(key)
                key.append(c)
        elif state == "PRE_VALUE":
            if c in _NEWLINE:
                push(False)
                state, key = "PRE_KEY", []
            elif c == "'":
                state = "SINGLE"
            elif c == '"':
                state = "DOUBLE"
            elif c == "\\":
                state = "VALUE_ESCAPE"
            elif c not in _WHITESPACE:
                state = "VALUE"
                value.append(c)
        elif state == "VALUE":
            if c in _NEWLINE:
                push(True)
                state, key = "PRE_KEY", []
            elif c == "\\":
                state, value_ws = "VALUE_ESCAPE", None
            else:
                if c not in _WHITESPACE:
                    value_ws = None
                elif value_ws is None:
                    value_ws = len(value)
                value.append(c)
        elif state == "VALUE_ESCAPE":
            state = "VALUE"
            if c not in _NEWLINE:
                value.append(c)
        elif state == "SINGLE":
            if c == "'":
                state = "PRE_VALUE"
            else:
                value.append(c)
        elif state == "DOUBLE":
            if c == '"':
                state = "PRE_VALUE"
            elif c == "\\":
                state = "DOUBLE_ESCAPE"
            else:
                value.append(c)
        elif state == "DOUBLE_ESCAPE":
            state = "DOUBLE"
            if c in _NEED_ESCAPE:
                value.append(c)
            elif c != "\n":
                value += ["\\", c]
        elif state == "COMMENT":
            if c == "\\":
                state = "COMMENT_ESCAPE"
            elif c in _NEWLINE:
                state = "PRE_KEY"
        elif state == "COMMENT_ESCAPE":
            state = "COMMENT"
    if state not in ("PRE_KEY", "KEY", "COMMENT", "COMMENT_ESCAPE"):
        push(state == "VALUE")
    return env


def instance(slot: Slot) -> str:
    """The systemd instance name of the slot's unit (``ouroboros-web@preview1`` -> ``preview1``);
    the slot id when the unit is not a template instance."""
    name = slot.unit.removesuffix(".service")
    return name.split("@", 1)[1] if "@" in name and name.split("@", 1)[1] else slot.id


def env_path(config: Config, slot: Slot) -> Path:
    return env_file_in(config.runtime.env_dir, slot)


def env_file_in(env_dir: Path, slot: Slot) -> Path:
    return env_dir / f"{instance(slot)}.env"


def require_env_file(env_dir: Path, slot: Slot) -> None:
    """Refuse to (re)start a slot's service whose env file is missing: the manager would refuse
    too, but only after stopping what runs (case C-11)."""
    path = env_file_in(env_dir, slot)
    if not path.exists():
        raise RuntimeFailed(f"{slot.unit} cannot start: its env file {path} is missing (run "
                            "`preview-slots provision`); the service was left as it was")


def public_url(config: Config, slot: Slot) -> str:
    if config.caddy.tls == "off":
        port = config.caddy.http_port
        return f"http://{slot.host}" + ("" if port == 80 else f":{port}")
    port = config.caddy.https_port
    return f"https://{slot.host}" + ("" if port == 443 else f":{port}")


def slot_environment(config: Config, slot: Slot) -> dict[str, str]:
    """Everything the slot's service gets, in file order. Raises ConfigError naming the key."""
    env = {
        "PREVIEW_SLOT": slot.id,
        "PORT": str(slot.port),
        "HOST": "127.0.0.1",
        "DATABASE_URL": config.database.slot_url(slot.database).url,
        "STATIC_ROOT": str(slot.static_root),
        "PUBLIC_URL": public_url(config, slot),
    }
    where = str(config.path) if config.path else None
    for prefix, extras in (("env", config.env), (f"slots.{slot.id}.env", slot.env)):
        for name, value in extras.items():
            if not KEY_RE.fullmatch(name):
                raise ConfigError("not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)",
                                  path=where, key=f"{prefix}.{name}")
            if name in CORE_KEYS:
                raise ConfigError(
                    f"{name} is set by preview-slots for every slot (the slot's own value) and "
                    "cannot be overridden; remove it", path=where, key=f"{prefix}.{name}")
            problem = value_problem(value)
            if problem:
                raise ConfigError(f"the value {problem}", path=where, key=f"{prefix}.{name}")
            env[name] = value
    for name, value in env.items():
        problem = value_problem(value)
        if problem:
            raise ConfigError(f"{name} for slot {slot.id}: the value {problem}", path=where)
        if SECRET_KEY_RE.search(name):
            register_secret(value)
    return env
