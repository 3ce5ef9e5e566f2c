"""Keep secrets out of every line we print, log or store."""

from __future__ import annotations

import re
from collections.abc import Iterable

_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<tail>@)", re.I)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.I)
MASK = "***"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask passwords in URLs and ``password=`` pairs, plus any literal secret given."""
    out = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", text)
    out = _KV_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", out)
    for secret in secrets:
        if secret and len(secret) >= 3:
            out = out.replace(secret, MASK)
    return out


_registered: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Remember a secret (a password from the configuration) so that every redaction masks it."""
    if secret:
        _registered.add(secret)


def mask(text: str) -> str:
    """``redact`` with every registered secret."""
    return redact(text, _registered)
