"""Refuse what in a seed file could leave the slot's database or the seed's one transaction.

Seeds run through psql (so that pg_dump's ``COPY ... FROM stdin`` blocks work), and psql obeys
backslash commands: ``\\c other_db`` would run the rest of the seed in another database (past the
safety guard), ``\\! cmd`` runs a shell command, ``\\o``/``\\copy``/``\\i`` touch local files. A
seed may only use the harmless ones in :data:`ALLOWED`. And a seed runs in one transaction
(``--single-transaction``) so that a failure keeps nothing: a ``COMMIT``, ``END``, ``ABORT`` or
``ROLLBACK`` statement would end it, and what follows would run (and stay) outside it, even
``CREATE DATABASE``. pg_dump never writes those.

This is a small lexer following psql's own rules: a backslash starts a meta-command anywhere
outside quotes, comments and COPY data; a semicolon ends a statement outside parentheses and
outside the ``BEGIN ATOMIC ... END`` body of a ``CREATE FUNCTION``/``PROCEDURE`` (psql's
heuristic: ``BEGIN`` and, inside it, ``CASE`` open a block that ``END`` closes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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
    return scan(text).meta_commands


def transaction_control(text: str) -> list[MetaCommand]:
    """Statements that would end the seed's transaction (``COMMIT``, ``END``, ``ABORT``,
    ``ROLLBACK`` but not ``ROLLBACK TO``, ``PREPARE TRANSACTION``), with the line each starts on."""
    return scan(text).transaction_control


@dataclass
class Scan:
    meta_commands: list[MetaCommand] = field(default_factory=list)
    transaction_control: list[MetaCommand] = field(default_factory=list)
    statements: list[tuple[int, int]] = field(default_factory=list)  # (first line, last line)

    def statement_ending_at(self, line: int) -> tuple[int, int] | None:
        """The statement psql sent at ``line`` (psql names the line a statement ends on)."""
        return next((s for s in reversed(self.statements) if s[1] == line), None)


@dataclass
class _Statement:
    """What the lexer tracks of the statement being read (psql's ``identifiers``, depths)."""

    text: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)  # its identifiers, lower case, in order
    line: int = 0  # where its first word is
    start: int = 0  # where its text begins (psql's query buffer: not "--" comments before it)
    parens: int = 0
    begin_depth: int = 0

    def word(self, word: str, line: int) -> None:
        lower = word.lower()
        if not self.words:
            self.line = line
        self.words.append(lower)
        if self._routine() and self.parens == 0:
            if lower == "begin" or (lower == "case" and self.begin_depth > 0):
                self.begin_depth += 1
            elif lower == "end" and self.begin_depth > 0:
                self.begin_depth -= 1

    def _routine(self) -> bool:
        """The statement starts CREATE [OR REPLACE] FUNCTION|PROCEDURE."""
        w = [*(x if x in _ROUTINE_WORDS else "" for x in self.words[:4]), "", "", "", ""]
        return w[0] == "create" and (w[1] in ("function", "procedure") or (
            w[1:3] == ["or", "replace"] and w[3] in ("function", "procedure")))

    def ends_transaction(self) -> str | None:
        first, second = [*self.words, "", ""][:2]
        if first in ("commit", "end", "abort") or (first == "rollback" and second != "to"):
            return first.upper()
        if first == "prepare" and second == "transaction":
            return "PREPARE TRANSACTION"
        return None


_ROUTINE_WORDS = frozenset({"create", "or", "replace", "function", "procedure"})
_WORD = re.compile(r"[A-Za-z_\x80-\uffff][A-Za-z0-9_$\x80-\uffff]*")


def scan(text: str) -> Scan:
    """Meta-commands outside :data:`ALLOWED` and statements that end the transaction."""
    found = Scan()
    lines = text.split("\n")
    statement = _Statement()
    i = 0
    quote: str | None = None  # "'", '"', "E'", a dollar tag, or "/*"
    depth = 0

    def end_statement(last_line: int) -> None:
        what = statement.ends_transaction()
        if what:
            found.transaction_control.append(MetaCommand(statement.line, what))
        if statement.start:
            found.statements.append((statement.start, last_line))

    while i < len(lines):
        line = lines[i]
        j = seg = 0
        while j < len(line):
            c = line[j]
            if quote is None:
                if line.startswith("--", j):
                    line = line[:j]  # a comment is not part of the statement (pg_dump's headers)
                    break
                if not statement.start and not c.isspace():
                    statement.start = i + 1
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
                        found.meta_commands.append(MetaCommand(i + 1, "\\" + name))
                    break  # the rest of the line belongs to the meta-command
                if (m := _WORD.match(line, j)) and not (j and _WORD.match(line[j - 1])):
                    if line.startswith("'", m.end()) and m.group(0) in ("E", "e"):
                        j += 1  # E'...': the quote's prefix, not a word
                        continue
                    statement.word(m.group(0), i + 1)
                    j = m.end()
                    continue
                if c == "(":
                    statement.parens += 1
                elif c == ")":
                    statement.parens = max(0, statement.parens - 1)
                elif c == ";" and statement.parens == 0 and statement.begin_depth == 0:
                    statement.text.append(line[seg: j + 1])
                    seg = j + 1
                    end_statement(i + 1)
                    if _COPY_STDIN.match(" ".join(statement.text)):
                        i = _skip_copy_data(lines, i + 1)
                        statement = _Statement()
                        line = ""
                        break
                    statement = _Statement()
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
            statement.text.append(line[seg:])
        i += 1
    # psql sends what is left at the end of the file, too
    end_statement(max((k for k, text in enumerate(lines, 1) if text.strip()), default=1))
    return found


def _skip_copy_data(lines: list[str], start: int) -> int:
    """Index of the line after the ``\\.`` that ends a COPY data block starting at ``start``."""
    k = start
    while k < len(lines) and lines[k].rstrip("\r") != "\\.":
        k += 1
    return k
