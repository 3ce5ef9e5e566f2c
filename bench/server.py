"""The benchmark's own PostgreSQL server, in a temporary folder, and what we do to it directly."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.common import BenchError, run
from preview_slots.local.pg import LocalPostgres, free_port, pg_bin_dir

# A production server keeps these on; the embedded local stack turns them off. The benchmark
# measures with them on unless --no-fsync is given (then it measures the local stack's settings).
DURABLE = "fsync = on\nsynchronous_commit = on\nfull_page_writes = on\n"
LOAD_FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class BenchServer:
    """One PostgreSQL server, an autocommit admin session on it, and the client programs."""

    def __init__(self, root: Path, *, durable: bool) -> None:
        self.root = root
        self.durable = durable
        self.pg = LocalPostgres(root / "pg", free_port(), pg_bin_dir())
        self._admin: psycopg.Connection[Any] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.pg.init()
        if self.durable:
            with (self.pg.datadir / "postgresql.conf").open("a") as fh:
                fh.write("# benchmark: durability as on a production server\n" + DURABLE)
        self.pg.start()

    def stop(self) -> None:
        if self._admin is not None and not self._admin.closed:
            self._admin.close()
        self.pg.stop("immediate")

    @property
    def admin(self) -> psycopg.Connection[Any]:
        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(self.url("postgres"), autocommit=True)
        return self._admin

    def url(self, db: str) -> str:
        return self.pg.url(db)

    def tool(self, name: str) -> str:
        return str(self.pg.bin_dir / name)

    def env(self, db: str) -> dict[str, str]:
        """libpq settings for the client programs (the password never appears in an argv)."""
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
                "PGHOST": "127.0.0.1", "PGPORT": str(self.pg.port), "PGUSER": "postgres",
                "PGPASSWORD": self.pg.password, "PGDATABASE": db,
                "PGAPPNAME": "preview-slots bench"}

    # -- SQL ---------------------------------------------------------------------------------

    def query(self, query: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
        cur = self.admin.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []

    def checkpoint(self) -> float:
        started = time.perf_counter()
        self.query("CHECKPOINT")
        return time.perf_counter() - started

    def load_fast(self, on: bool) -> None:
        """While building source databases (not measured), skip fsync; flush everything after."""
        if not self.durable:
            return
        for name, value in LOAD_FAST.items():
            if on:
                self.query(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name),
                                                                      sql.Literal(value)))
            else:
                self.query(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)))
        self.query("SELECT pg_reload_conf()")
        time.sleep(0.3)  # the reload is asynchronous
        if not on:
            self.checkpoint()
            os.sync()

    def exists(self, db: str) -> bool:
        return bool(self.query("SELECT 1 FROM pg_database WHERE datname = %s", (db,)))

    def size(self, db: str) -> int:
        return int(self.query("SELECT pg_database_size(%s)", (db,))[0][0])

    def oid(self, db: str) -> int:
        return int(self.query("SELECT oid FROM pg_database WHERE datname = %s", (db,))[0][0])

    def create(self, db: str, *, template: str | None = None, strategy: str | None = None) -> None:
        parts = [sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db))]
        if template:
            parts.append(sql.SQL("TEMPLATE {}").format(sql.Identifier(template)))
        if strategy:
            parts.append(sql.SQL("STRATEGY {}").format(sql.Identifier(strategy)))
        self.query(sql.SQL(" ").join(parts))

    def drop(self, db: str) -> None:
        if self.exists(db):
            self.query(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(
                sql.Identifier(db)))
        self.query(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))

    def drop_prefixed(self, prefix: str) -> None:
        for (name,) in self.query("SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                                  (prefix,)):
            self.drop(name)

    # -- client programs -----------------------------------------------------------------------

    def psql_file(self, db: str, path: Path) -> None:
        """The way preview-slots applies a seed: psql, one transaction, stop at the first error."""
        run([self.tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
             "--no-psqlrc", "-o", os.devnull, "-f", str(path)], env=self.env(db), what="psql")

    def pg_restore(self, db: str, archive: Path, jobs: int) -> None:
        run([self.tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
             "--jobs", str(jobs), "--dbname", db, str(archive)], env=self.env(db),
            what="pg_restore")

    def pg_dump(self, db: str, target: Path, fmt: str) -> None:
        run([self.tool("pg_dump"), f"--format={fmt}", "--no-owner", "--no-privileges",
             "--file", str(target), db], env=self.env(db), what="pg_dump")

    def pgbench_init(self, db: str, scale: int) -> None:
        # server-side generation (G): the data never crosses the client connection
        run([self.tool("pgbench"), "-i", "-q", "-I", "dtGvp", "-s", str(scale), db],
            env=self.env(db), what="pgbench -i")

    # -- the floor -----------------------------------------------------------------------------

    def copy_floor(self, db: str, scratch: Path) -> float:
        """``cp -r`` of the database's folder (``base/<oid>``) plus an fsync of every copied file
        (``sync FILE...``): the least any copy of these bytes costs on this disk. We run the copy
        as ourselves: as root we may read the server's files; otherwise the server runs as us."""
        source = self.pg.datadir / "base" / str(self.oid(db))
        if not source.is_dir():
            raise BenchError(f"no folder {source} for database {db}")
        target = scratch / f"floor-{db}"
        shutil.rmtree(target, ignore_errors=True)
        started = time.perf_counter()
        subprocess.run(["cp", "-r", str(source), str(target)], check=True)
        files = sorted(str(p) for p in target.iterdir())
        subprocess.run(["sync", "--", *files, str(target)], check=True)
        elapsed = time.perf_counter() - started
        shutil.rmtree(target, ignore_errors=True)
        return elapsed
