"""PostgreSQL administration of slot databases: the safety guard, drop, create, rename, clone.

Only the databases named in the slot table, and the tool's own working databases under the
reserved prefix (``<prefix>build_<slot>``, ``<prefix>old_<slot>``, ``<prefix>spare_<slot>``,
``<prefix>tpl_<key>``), may ever be created, renamed or dropped. Anything else is refused before
any SQL is sent. Identifiers are always composed with ``psycopg.sql.Identifier``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from preview_slots.config import RESERVED_DATABASES, Config, Slot, check_database_name
from preview_slots.controlplane import Row, connect
from preview_slots.errors import (
    DatabaseUnavailable,
    NotAllowedDatabase,
    ResetFailed,
    SafetyRefusal,
)
from preview_slots.redact import mask

log = logging.getLogger(__name__)

ADVISORY_NAMESPACE = 0x70736C74  # "pslt": the per-slot reset mutex on the slot server
APP_NAME = re.compile(r"^preview-slots reset slot=(?P<slot>[a-z0-9]+) gen=(?P<gen>\d+)$")
DROP_ATTEMPTS = 5
INVALID_DATABASE = -2  # pg_database.datconnlimit of a database whose DROP was interrupted


def build_name(config: Config, slot: Slot) -> str:
    return f"{config.cache.prefix}build_{slot.id}"


def old_name(config: Config, slot: Slot) -> str:
    return f"{config.cache.prefix}old_{slot.id}"


def spare_name(config: Config, slot: Slot) -> str:
    return f"{config.cache.prefix}spare_{slot.id}"


def template_name(config: Config, kind: str, version: str, checksum: str) -> str:
    clean = re.sub(r"[^a-z0-9]+", "_", version.lower()).strip("_")[:24] or "v"
    return f"{config.cache.prefix}tpl_{kind[:4]}_{clean}_{checksum[:12]}"


def marker(slot: Slot, generation: int) -> str:
    return f"preview-slots slot={slot.id} generation={generation}"


class Guard:
    """Decides, without touching the server, whether a database name may be created or dropped."""

    def __init__(self, config: Config) -> None:
        self.config = config
        prefix = re.escape(config.cache.prefix)
        slot_ids = "|".join(re.escape(s.id) for s in config.slots)
        self._own = re.compile(rf"^{prefix}(?:(?:build|old|spare)_(?:{slot_ids})|"
                               rf"tpl_[a-z0-9_]{{1,48}})$")
        self._slot_dbs = {s.database for s in config.slots}
        self._deny = set(RESERVED_DATABASES) | {
            config.control_plane.dbname, config.database.maintenance_db,
        }

    def check(self, name: str) -> str:
        if name in self._deny:
            raise NotAllowedDatabase(name, "it is a system, maintenance or control-plane database")
        problem = check_database_name(name)
        if problem:
            raise NotAllowedDatabase(name, f"the name {problem}")
        if name in self._slot_dbs or self._own.fullmatch(name):
            return name
        raise NotAllowedDatabase(
            name, "it is not a slot database in the slot table nor one of preview-slots' own "
            f"working databases ({self.config.cache.prefix}...)"
        )

    def is_own(self, name: str) -> bool:
        return bool(self._own.fullmatch(name))


@dataclass(frozen=True)
class Session:
    pid: int
    application_name: str
    usename: str | None
    state: str | None


class SlotServer:
    """An autocommit admin connection to the maintenance database of the slot server."""

    def __init__(self, config: Config, *, application_name: str = "preview-slots admin") -> None:
        self.config = config
        self.guard = Guard(config)
        self.conn = connect(config.database.url, what="slot database server",
                            application_name=application_name)
        try:
            self._exec("SET lock_timeout = '10s'")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.close()

    def __enter__(self) -> SlotServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _exec(self, query: sql.Composable | str, params: Any = None) -> list[Row]:
        try:
            cur = self.conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []
        except psycopg.OperationalError as exc:
            if self.conn.broken:  # the server went away: not a problem of this statement
                raise server_lost(self.config, exc) from exc
            raise

    # -- inspection ---------------------------------------------------------------------------

    def server_version(self) -> str:
        return str(self._exec("SHOW server_version")[0]["server_version"])

    def available_extensions(self) -> set[str]:
        return {r["name"] for r in self._exec("SELECT name FROM pg_available_extensions")}

    def exists(self, name: str) -> bool:
        return bool(self._exec("SELECT 1 FROM pg_database WHERE datname = %s", (name,)))

    def comment(self, name: str) -> str | None:
        rows = self._exec("SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database "
                          "WHERE datname = %s", (name,))
        return rows[0]["c"] if rows else None

    def relations(self, name: str) -> int:
        """How many tables, views, sequences... the database ``name`` holds (outside the system
        schemas), on a short connection of its own."""
        self.guard.check(name)
        try:
            with connect(self.config.database.url.with_dbname(name), what="slot database",
                         application_name="preview-slots check") as conn:
                row = conn.execute(
                    "SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
                    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                    "AND n.nspname NOT LIKE 'pg\\_toast%'").fetchone()
        except psycopg.OperationalError as exc:
            raise server_lost(self.config, exc) from exc
        return int(row["n"]) if row else 0

    def sessions(self, name: str) -> list[Session]:
        rows = self._exec(
            "SELECT pid, application_name, usename, state FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        return [Session(r["pid"], r["application_name"] or "", r["usename"], r["state"])
                for r in rows]

    def databases(self, like_prefix: str) -> list[Row]:
        return self._exec(
            "SELECT datname, pg_database_size(oid) AS size, datistemplate, datallowconn, "
            "shobj_description(oid, 'pg_database') AS comment FROM pg_database "
            "WHERE starts_with(datname, %s) ORDER BY datname", (like_prefix,))

    # -- the per-slot mutex (fencing at the resource) -----------------------------------------

    def lock_slot(self, slot: Slot, generation: int, *, wait: float = 10.0) -> None:
        """Take the slot's advisory lock on this session.

        A holder whose generation is lower than ours is stale by definition (the control plane
        handed the slot out again), so its session is terminated: whatever it was about to send
        can no longer reach the server on that session.
        """
        self._exec("SELECT set_config('application_name', %s, false)",
                   (f"preview-slots reset slot={slot.id} gen={generation}",))
        key = _slot_key(slot.id)
        deadline = time.monotonic() + wait
        while True:
            row = self._exec("SELECT pg_try_advisory_lock(%s, %s) AS ok",
                             (ADVISORY_NAMESPACE, key))
            if row[0]["ok"]:
                return
            holders = self._exec(
                "SELECT a.pid, a.application_name FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
                "AND l.classid = %s::oid AND l.objid = %s::oid AND l.granted",
                (ADVISORY_NAMESPACE, key & 0xFFFFFFFF))
            for holder in holders:
                match = APP_NAME.match(holder["application_name"] or "")
                if match and int(match["gen"]) < generation:
                    log.warning("terminating stale reset session pid %s (%s)", holder["pid"],
                                holder["application_name"])
                    self._exec("SELECT pg_terminate_backend(%s, 5000)", (holder["pid"],))
            if time.monotonic() > deadline:
                who = ", ".join(f"pid {h['pid']} ({h['application_name']})" for h in holders)
                raise SafetyRefusal(
                    f"slot {slot.id} is being reset by another session ({who or 'unknown'}); "
                    "wait for it or stop it"
                )
            time.sleep(0.05)

    # -- DDL ----------------------------------------------------------------------------------

    def block_and_terminate(self, name: str) -> None:
        """Refuse new connections to ``name`` and end the ones it has. A database left invalid
        by an interrupted DROP DATABASE (``datconnlimit`` -2) has none, accepts none, and may
        not be altered (the server ends the session that tries): it can only be dropped."""
        self.guard.check(name)
        rows = self._exec("SELECT datconnlimit FROM pg_database WHERE datname = %s", (name,))
        if not rows or rows[0]["datconnlimit"] == INVALID_DATABASE:
            return
        self._exec(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
            sql.Identifier(name)))
        self._exec("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                   "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))

    def drop(self, name: str) -> None:
        """``DROP DATABASE ... WITH (FORCE)`` with bounded retries; names the blockers on failure."""
        self.guard.check(name)
        last: Exception | None = None
        for attempt in range(DROP_ATTEMPTS):
            try:
                if self.exists(name):
                    self.block_and_terminate(name)
                self._exec(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))
                return
            except (pg_errors.ObjectInUse, pg_errors.LockNotAvailable) as exc:
                last = exc
                time.sleep(0.1 * (attempt + 1))
        blockers = ", ".join(f"pid {s.pid} ({s.application_name or s.usename})"
                             for s in self.sessions(name))
        raise ResetFailed(
            f"could not drop {name} after {DROP_ATTEMPTS} attempts: {mask(str(last))}"
            f"{'; sessions: ' + blockers if blockers else ''}", phase="drop",
        )

    def create(self, name: str, *, template: str | None = None, strategy: str | None = None,
               comment: str | None = None) -> None:
        self.guard.check(name)
        parts: list[sql.Composable] = [sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))]
        if self.config.database.owner:
            parts.append(sql.SQL("OWNER {}").format(sql.Identifier(self.config.database.owner)))
        parts.append(sql.SQL("TEMPLATE {}").format(sql.Identifier(template or "template0")))
        if strategy:
            parts.append(sql.SQL("STRATEGY {}").format(sql.Identifier(strategy)))
        if template is None:
            parts.append(sql.SQL("ENCODING 'UTF8'"))
        self._exec(sql.SQL(" ").join(parts))
        if comment is not None:
            self.set_comment(name, comment)

    def set_comment(self, name: str, text: str) -> None:
        self.guard.check(name)
        self._exec(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(name), sql.Literal(text)))

    def rename(self, old: str, new: str) -> None:
        self.guard.check(old)
        self.guard.check(new)
        self._exec(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
            sql.Identifier(old), sql.Identifier(new)))

    def set_template(self, name: str, *, is_template: bool) -> None:
        self.guard.check(name)
        flag = sql.SQL("true" if is_template else "false")
        self._exec(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE {} ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), flag, sql.SQL("false" if is_template else "true")))

    def swap_in(self, build: str, target: str, old: str, *, attempts: int = 5) -> None:
        """Put ``build`` in place of ``target``; ``target`` (if any) becomes ``old``."""
        for name in (build, target, old):
            self.guard.check(name)
        if self.exists(old):
            self.drop(old)
        for attempt in range(attempts):
            try:
                if self.exists(target):
                    self.block_and_terminate(target)
                    self.rename(target, old)
                self.rename(build, target)
                return
            except (pg_errors.ObjectInUse, pg_errors.LockNotAvailable) as exc:
                if attempt == attempts - 1:
                    blockers = ", ".join(f"pid {s.pid} ({s.application_name or s.usename})"
                                         for s in self.sessions(target))
                    raise ResetFailed(
                        f"could not swap the new database into {target}: {mask(str(exc))}"
                        f"{'; sessions: ' + blockers if blockers else ''}", phase="swap",
                    ) from exc
                time.sleep(0.05 * (attempt + 1))

    @contextmanager
    def connect_to(self, name: str) -> Iterator[psycopg.Connection[Row]]:
        conn = connect(self.config.database.url.with_dbname(name), what=f"database {name}")
        try:
            yield conn
        finally:
            conn.close()


def _slot_key(slot_id: str) -> int:
    import zlib

    return zlib.crc32(slot_id.encode()) & 0x7FFFFFFF


def slot_lock(slot: Slot) -> tuple[int, int]:
    """The two keys of the slot's reset mutex, for ``pg_advisory_lock(int, int)``."""
    return ADVISORY_NAMESPACE, _slot_key(slot.id)


def is_psycopg_error(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.Error)


def server_lost(config: Config, exc: psycopg.Error) -> DatabaseUnavailable:
    """The slot server went away (restarted, crashed, ended our session) under ``exc``."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection closed"
    return DatabaseUnavailable(f"lost the slot database server at "
                               f"{config.database.url.masked()}: {mask(first)}")
