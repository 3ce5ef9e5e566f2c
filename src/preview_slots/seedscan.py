"""Refuse psql meta-commands in seed files that could leave the slot's database or the transaction.

Seeds run through psql (so that pg_dump's ``COPY ... FROM stdin`` blocks work), and psql obeys
backslash commands: ``\\c other_db`` would run the rest of the seed in another database (past the
safety guard), ``\\! cmd`` runs a shell command, ``\\o``/``\\copy``/``\\i`` touch local files. A
seed may only use the harmless ones in :data:`ALLOWED`. This is a small lexer following psql's own
rules: a backslash starts a meta-command anywhere outside quotes, comments and COPY data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ALLOWED = frozenset({
    "set", "unset", "echo", "qecho", "warn", "if", "elif", "else", "endif", "pset",
    "restrict", "unrestrict",  # emitted by recent pg_dump versions
})
_COPY_STDIN = re.compile(r"^\s*COPY\b.*\bFROM\s+STDIN\b", re.I | re.S)
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


@dataclass(frozen=True)
class MetaCommand:
    line: int
    command: str


def forbidden_meta_commands(text: str) -> list[MetaCommand]:
    """The meta-commands outside :data:`ALLOWED`, with their line numbers."""
    found: list[MetaCommand] = []
    lines = text.split("\n")
    statement: list[str] = []
    i = 0
    quote: str | None = None  # "'", '"', "E'", a dollar tag, or "/*"
    depth = 0
    while i < len(lines):
        line = lines[i]
        j = seg = 0
        while j < len(line):
            c = line[j]
            if quote is None:
                if line.startswith("--", j):
                    line = line[:j]  # a comment is not part of the statement (pg_dump's headers)
                    break
                if line.startswith("/*", j):
                    quote, depth, j = "/*", 1, j + 2
                    continue
                if c in ("'", '"'):
                    prev = line[j - 1] if j else ""
                    quote = "E'" if c == "'" and prev in ("E", "e") else c
                    j += 1
                    continue
                if c == "$" and (m := _DOLLAR_TAG.match(line, j)):
                    quote, j = m.group(0), m.end()
                    continue
                if c == "\\":
                    word = re.match(r"\\([A-Za-z!?]+|\S)", line[j:])
                    name = word.group(1) if word else ""
                    if name not in ALLOWED:
                        found.append(MetaCommand(i + 1, "\\" + name))
                    break  # the rest of the line belongs to the meta-command
                if c == ";":
                    statement.append(line[seg: j + 1])
                    seg = j + 1
                    if _COPY_STDIN.match(" ".join(statement)):
                        i = _skip_copy_data(lines, i + 1)
                        statement = []
                        line = ""
                        break
                    statement = []
                j += 1
            elif quote == "/*":
                if line.startswith("*/", j):
                    depth -= 1
                    j += 2
                    if depth == 0:
                        quote = None
                elif line.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                else:
                    j += 1
            elif quote == "E'":
                if c == "\\":
                    j += 2
                elif c == "'":
                    quote, j = None, j + 1
                else:
                    j += 1
            elif quote in ("'", '"'):
                if c == quote:
                    quote = None
                j += 1
            elif line.startswith(quote, j):  # the end of a dollar quote
                j += len(quote)
                quote = None
            else:
                j += 1
        if line and quote is None:
            statement.append(line[seg:])
        i += 1
    return found


def _skip_copy_data(lines: list[str], start: int) -> int:
    """Index of the line after the ``\\.`` that ends a COPY data block starting at ``start``."""
    k = start
    while k < len(lines) and lines[k].rstrip("\r") != "\\.":
        k += 1
    return k
