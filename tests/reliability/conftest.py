"""The reliability suite's own PostgreSQL server, its size, and the table of figures it prints.

The suite runs on a server of its own (more connections, statement logging available, and free to
be restarted mid-storm without disturbing the rest of the session). ``make test`` runs it at CI
size; ``PREVIEW_SLOTS_RELIABILITY=full`` (``make reliability``) runs the full size.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from preview_slots.local.pg import LocalPostgres, free_port, pg_bin_dir
from tests.reliability.figures import FIGURES, render

FULL = os.environ.get("PREVIEW_SLOTS_RELIABILITY", "").lower() == "full"

SERVER_SETTINGS = """
# reliability suite: room for a few hundred concurrent clients; log lines name the application
# (which carries the slot and generation of a reset) so a test can tell who sent a statement
max_connections = 600
log_line_prefix = '%m [%p] app=%a db=%d: '
"""


def size(ci: int, full: int) -> int:
    """A count for this run: ``ci`` under ``make test``, ``full`` under ``make reliability``."""
    return full if FULL else ci


@pytest.fixture(scope="session")
def pg() -> Iterator[LocalPostgres]:
    """Overrides the session server for this folder: a dedicated one (see the module doc). Its
    folder is outside pytest's temporary tree, as the session server's is: another pytest
    session starting meanwhile prunes old trees, and would delete this server's data folder."""
    root = Path(tempfile.mkdtemp(prefix="preview-slots-reliability-pg-"))
    server = LocalPostgres(root, free_port(), pg_bin_dir())
    server.init()
    with (server.datadir / "postgresql.conf").open("a") as fh:
        fh.write(SERVER_SETTINGS)
    server.start()
    yield server
    server.stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section(f"reliability figures ({'full' if FULL else 'CI'} size)")
        terminalreporter.write_line(render(FIGURES))
