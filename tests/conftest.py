"""Shared fixtures: one real PostgreSQL server for the session, and per-test configs that give
each test its own control plane, slot databases and working-database prefix on that server."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from preview_slots.config import Config, load_config
from preview_slots.local.pg import LocalPostgres, free_port, pg_bin_dir

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SEEDS = ROOT / "examples" / "seeds"
_counter = itertools.count(1)
DEFAULT_LEASE = 'reset_ttl = "20s"\npoll_interval = "1s"'


@pytest.fixture(scope="session", autouse=True)
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Remembered checksums go to a folder of the test session, not the user's ~/.cache (the
    CLI subprocesses inherit the variable)."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(scope="session")
def pg() -> Iterator[LocalPostgres]:
    """A real PostgreSQL server on loopback for the whole session.

    Its folder is outside pytest's temporary tree on purpose: when tests run as root the server
    runs as an unprivileged user, and pytest resets its tree to mode 0700 (and prunes old runs)
    whenever another pytest session starts."""
    root = Path(tempfile.mkdtemp(prefix="preview-slots-test-pg-"))
    server = LocalPostgres(root, free_port(), pg_bin_dir())
    server.init()
    server.start()
    yield server
    server.stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class Env:
    """One test's world: a config file on the shared server and helpers around it."""

    pg: LocalPostgres
    path: Path
    config: Config
    tag: str
    tmp: Path

    def cli(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the installed CLI as CI would: a subprocess, reading stdout/stderr/exit code."""
        full_env = {**os.environ, "PREVIEW_SLOTS_CONFIG": str(self.path), **(env or {})}
        if "PREVIEW_SLOTS_FAILPOINT" not in (env or {}):
            full_env.pop("PREVIEW_SLOTS_FAILPOINT", None)
        return subprocess.run([sys.executable, "-m", "preview_slots", *args], env=full_env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        full_env = {**os.environ, "PREVIEW_SLOTS_CONFIG": str(self.path), **(env or {})}
        return subprocess.Popen([sys.executable, "-m", "preview_slots", *args], env=full_env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def connect(self, dbname: str) -> psycopg.Connection[Any]:
        return psycopg.connect(self.pg.url(dbname), autocommit=True)

    def query(self, dbname: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect(dbname) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def cp(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        return self.query(self.config.control_plane.dbname, sql, params)

    def databases(self) -> set[str]:
        return {r[0] for r in self.query("postgres", "SELECT datname FROM pg_database")}

    def checksum(self, dbname: str) -> str:
        """A data checksum over every user table, ordered: equal content gives equal text."""
        with self.connect(dbname) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
                "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
                "ORDER BY 1").fetchall()]
            parts = []
            for table in tables:
                row = conn.execute(
                    f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                    f"FROM {table} t").fetchone()
                parts.append(f"{table}:{row[0]}:{row[1]}" if row else table)
            return ";".join(parts)


def write_config(pg: LocalPostgres, folder: Path, *, tag: str, slots: int = 3,
                 seeds_dir: Path | None = None, extra: str = "", lease: str = "",
                 slot_lines: str = "", ports: list[int] | None = None,
                 cache: str = "background_prewarm = false") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    slot_text = ""
    for n in range(1, slots + 1):
        port = ports[n - 1] if ports else 3100 + n
        slot_text += (f'[[slots]]\nid = "{tag}p{n}"\nhost = "{tag}p{n}.example.com"\n'
                      f'port = {port}\ndatabase = "{tag}_app_preview_{n}"\n'
                      f'static_root = "{folder}/static/p{n}"\n{slot_lines}\n')
    text = (
        f'[database]\nurl = "{pg.url("postgres")}"\nbin_dir = "{pg.bin_dir}"\n\n'
        f'[control_plane]\nurl = "{pg.url(tag + "_cp")}"\n\n'
        f'[seeds]\ndir = "{seeds_dir or EXAMPLE_SEEDS}"\n\n'
        f'[snapshots]\ndir = "{folder}/snapshots"\n\n'
        f'[cache]\nprefix = "c{tag}_"\n{cache}\n\n'
        f"[lease]\n{lease or DEFAULT_LEASE}\n\n"
        f'[runtime]\nmanager = "none"\n\n[caddy]\ntls = "off"\nhttp_port = 8080\n\n'
        f"{extra}\n{slot_text}"
    )
    path = folder / "preview-slots.toml"
    path.write_text(text)
    return path


@pytest.fixture
def make_env(pg: LocalPostgres, tmp_path: Path) -> Callable[..., Env]:
    """Build a fresh world: ``make_env(slots=3, init=True, seeds=...)``."""

    def factory(*, slots: int = 3, init: bool = True, seeds: Path | None = None,
                extra: str = "", lease: str = "", **kw: Any) -> Env:
        tag = f"t{next(_counter)}x{os.getpid() % 1000}"
        folder = tmp_path / tag
        seeds_dir = seeds or (folder / "seeds")
        if seeds is None:
            shutil.copytree(EXAMPLE_SEEDS, seeds_dir)
        path = write_config(pg, folder, tag=tag, slots=slots, seeds_dir=seeds_dir, extra=extra,
                            lease=lease, **kw)
        env = Env(pg, path, load_config(path), tag, folder)
        if init:
            result = env.cli("init")
            assert result.returncode == 0, result.stderr
        return env

    return factory


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env()


@pytest.fixture
def loaded(env: Env) -> Env:
    """An env whose first slot has been reset once from seed v1 and released again."""
    result = env.cli("allocate", "--run-id", "first", "--strategy", "seed", "--seed-version", "v1")
    assert result.returncode == 0, result.stderr
    assert env.cli("release", "--run-id", "first").returncode == 0
    return env
