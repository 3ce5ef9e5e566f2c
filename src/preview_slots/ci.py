"""Outputs for CI systems: the ``key=value`` lines GitHub Actions reads from ``$GITHUB_OUTPUT``.

The same one-line-per-value format is a GitLab ``dotenv`` report. A value with a line break
could forge further outputs, so it is refused, as are keys outside ``[A-Za-z_][A-Za-z0-9_-]*``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from preview_slots.errors import OperationFailed, UsageError

OUTPUT_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def github_output_lines(values: Mapping[str, object]) -> str:
    """The text to append: ``key=value\\n`` per item, in order. Raises :class:`UsageError`
    (nothing written) for a bad key or a value containing CR, LF or NUL."""
    lines = []
    for key, raw in values.items():
        value = "" if raw is None else str(raw)
        if not OUTPUT_KEY_RE.fullmatch(key):
            raise UsageError(f"CI output name {key!r} is not allowed: use letters, digits, _ "
                             "and -, starting with a letter or _")
        if any(c in value for c in "\r\n\x00"):
            raise UsageError(f"CI output {key!r} contains a line break or NUL and would forge "
                             "other outputs; nothing was written")
        lines.append(f"{key}={value}\n")
    return "".join(lines)


def write_github_output(path: str | os.PathLike[str], values: Mapping[str, object]) -> None:
    """Append ``values`` to the ``$GITHUB_OUTPUT`` file at ``path`` (created if missing), all
    lines in one ``write`` so that a concurrent step cannot interleave with them."""
    text = github_output_lines(values).encode("utf-8")
    target = Path(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, text)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OperationFailed(f"cannot write the CI output file {target}: "
                              f"{exc.strerror or exc}") from exc
    if written != len(text):
        raise OperationFailed(f"short write to the CI output file {target}: "
                              f"{written} of {len(text)} bytes")
