"""The control plane: leases, history and provenance in PostgreSQL.

Every time comes from the database's clock. A claim is one short transaction; nothing here holds a
transaction open across a reset. SQL lives in ``sql/queries.sql`` and ``sql/migrations/``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from preview_slots import failpoints
from preview_slots.config import Config, PgUrl
from preview_slots.errors import DatabaseUnavailable
from preview_slots.redact import mask

log = logging.getLogger(__name__)

Row = dict[str, Any]
MIGRATION_LOCK = 0x70736C6F  # "pslo": serialises concurrent `init`
CONNECT_TIMEOUT = 10


class LeaseState(StrEnum):
    RESETTING = "resetting"
    READY = "ready"
    RELEASED = "released"
    EXPIRED = "expired"
    FAILED = "failed"


class ResetStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABANDONED = "abandoned"


@dataclass(frozen=True)
class Lease:
    lease_id: int
    slot_id: str
    run_id: str
    generation: int
    state: LeaseState
    db_name: str
    expires_at: datetime
    granted_at: datetime
    strategy: str | None
    seed_version: str | None
    snapshot_version: str | None
    reset_id: int | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any], db_name: str | None = None) -> Lease:
        return cls(
            lease_id=row["lease_id"], slot_id=row["slot_id"], run_id=row["run_id"],
            generation=row["generation"], state=LeaseState(row["state"]),
            db_name=db_name or row["db_name"], expires_at=row["expires_at"],
            granted_at=row["granted_at"], strategy=row.get("strategy"),
            seed_version=row.get("seed_version"), snapshot_version=row.get("snapshot_version"),
            reset_id=row.get("reset_id"),
        )


@cache
def queries() -> dict[str, str]:
    text = resources.files("preview_slots.sql").joinpath("queries.sql").read_text()
    out: dict[str, str] = {}
    name: str | None = None
    for line in text.splitlines():
        if line.startswith("-- name:"):
            name = line.split(":", 1)[1].strip()
            out[name] = ""
        elif name is not None and not line.startswith("--"):
            out[name] += line + "\n"
    return {k: v.strip().rstrip(";") for k, v in out.items()}


def migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("preview_slots.sql").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number = int(entry.name.split("_", 1)[0])
            found.append((number, entry.name, entry.read_text()))
    return sorted(found)


def owner_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def connect(target: PgUrl, *, what: str, autocommit: bool = True,
            application_name: str = "preview-slots") -> psycopg.Connection[Row]:
    """Open a connection from keyword parameters (never concatenated conninfo text)."""
    params = dict(target.params)
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
    params["application_name"] = application_name
    try:
        conninfo = make_conninfo(**params)
        return psycopg.connect(conninfo, autocommit=autocommit, row_factory=dict_row)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot connect to the {what} at {target.masked()}: {mask(first)}"
        ) from exc


class ControlPlane:
    """Typed access to the control-plane database."""

    def __init__(self, config: Config, conn: psycopg.Connection[Row] | None = None) -> None:
        self.config = config
        self._conn = conn

    @property
    def conn(self) -> psycopg.Connection[Row]:
        if self._conn is None or self._conn.closed:
            conn = connect(self.config.control_plane, what="control plane",
                           application_name="preview-slots control")
            try:
                conn.execute("SET statement_timeout = '30s'")
                conn.execute("SET lock_timeout = '10s'")
                conn.execute("SET idle_in_transaction_session_timeout = '60s'")
            except psycopg.OperationalError as exc:
                conn.close()
                raise self._lost(exc) from exc
            self._conn = conn
        return self._conn

    def _lost(self, exc: psycopg.OperationalError) -> DatabaseUnavailable:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "closed"
        return DatabaseUnavailable(
            f"lost the control plane at {self.config.control_plane.masked()}: {mask(first)}")

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Row]]:
        try:
            with self.conn.transaction():
                yield self.conn
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from exc

    def q(self, name: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        try:
            cur = self.conn.execute(queries()[name], dict(params or {}))
            return cur.fetchall() if cur.description else []
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from exc

    def one(self, name: str, params: Mapping[str, Any] | None = None) -> Row | None:
        rows = self.q(name, params)
        return rows[0] if rows else None

    # -- schema -------------------------------------------------------------------------------

    def ensure_database(self) -> bool:
        """Create the control-plane database itself when it does not exist yet."""
        target = self.config.control_plane
        maint = target.with_dbname(self.config.database.maintenance_db)
        with connect(maint, what="control-plane server") as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (target.dbname,)).fetchone()
            if exists:
                return False
            from psycopg import sql

            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.dbname)))
            except (pg_errors.DuplicateDatabase, pg_errors.UniqueViolation):
                return False  # a concurrent `init` created it first (pg_database's unique index)
            return True

    def migrate(self) -> list[str]:
        """Apply missing migrations in one transaction under an advisory lock (safe concurrently)."""
        applied: list[str] = []
        with self.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS preview_slots_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in conn.execute(
                "SELECT version FROM preview_slots_migrations").fetchall()}
            for number, name, text in migrations():
                if number in done:
                    continue
                conn.execute(text.encode())  # trusted, packaged SQL
                conn.execute("INSERT INTO preview_slots_migrations (version, name) VALUES (%s, %s)",
                             (number, name))
                applied.append(name)
        return applied

    def schema_version(self) -> int:
        try:
            row = self.conn.execute(
                "SELECT coalesce(max(version), 0) AS v FROM preview_slots_migrations").fetchone()
        except pg_errors.UndefinedTable:
            return 0
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from exc
        return int(row["v"]) if row else 0

    def require_schema(self) -> None:
        from preview_slots.errors import UsageError

        latest = migrations()[-1][0]
        current = self.schema_version()
        if current < latest:
            raise UsageError(
                f"the control plane at {self.config.control_plane.masked()} is at schema version "
                f"{current}, this preview-slots needs {latest}: run `preview-slots init`"
            )

    def sync_slots(self) -> None:
        """Make the slots table know every configured slot and its database. Read first: the
        upsert locks each row it looks at (even when it changes nothing), which a concurrent
        claim's SKIP LOCKED would see as "taken", so it runs only when something differs."""
        known = {r["slot_id"]: r["db_name"] for r in self.q("slot_table")}
        for slot in self.config.slots:
            if known.get(slot.id) != slot.database:
                self.q("sync_slot", {"slot_id": slot.id, "db_name": slot.database})

    # -- leases ------------------------------------------------------------------------------

    def expire(self) -> list[str]:
        """End every lease past its expiry (DB clock); their running resets become abandoned."""
        rows = self.q("expire_leases")
        self.q("abandon_orphan_resets")
        return [r["slot_id"] for r in rows]

    def event(self, lease: Lease | Mapping[str, Any], event: str, **details: Any) -> None:
        get = (lambda k: getattr(lease, k)) if isinstance(lease, Lease) else lease.__getitem__
        self.q("event", {"slot_id": get("slot_id"), "run_id": get("run_id"),
                         "lease_id": get("lease_id"), "generation": get("generation"),
                         "event": event, "details": Jsonb(details)})

    def live_lease_for_run(self, run_id: str) -> Row | None:
        return self.one("live_lease_for_run", {"run_id": run_id})

    def live_lease_for_slot(self, slot_id: str) -> Row | None:
        return self.one("live_lease_for_slot", {"slot_id": slot_id})

    def claim(self, run_id: str, *, slot_ids: Sequence[str], ttl: float, strategy: str | None,
              seed_version: str | None, snapshot_version: str | None,
              slot_id: str | None = None, waiter_id: int | None = None) -> Lease | None:
        """One short transaction: pick a free slot (or the given one), bump its generation and
        insert a resetting lease. Returns None when no slot is free, or when waiters queued
        before this caller (``waiter_id``, None when not in line) come first. Raises
        ``psycopg.errors.UniqueViolation`` when another claimer won a race (callers retry)."""
        if slot_id is None and not self.my_turn(slot_ids, waiter_id):
            return None
        with self.transaction():
            self.expire()
            if slot_id is not None:
                row = self.one("lock_slot", {"slot_id": slot_id})
                if row is None or self.live_lease_for_slot(slot_id) is not None:
                    return None
            else:
                last = self.one("last_slot_of_run", {"run_id": run_id})
                row = self.one("pick_free_slot", {
                    "slot_ids": list(slot_ids), "prefer": last["slot_id"] if last else "",
                })
                if row is None:
                    return None
            failpoints.hit("in_claim")  # the slot's row is locked until this transaction ends
            gen = self.one("bump_generation", {"slot_id": row["slot_id"]})
            assert gen is not None
            lease_row = self.one("insert_lease", {
                "slot_id": row["slot_id"], "run_id": run_id, "generation": gen["generation"],
                "owner": owner_tag(), "strategy": strategy, "seed_version": seed_version,
                "snapshot_version": snapshot_version, "ttl": ttl,
            })
            assert lease_row is not None
            lease = Lease.from_row(lease_row, db_name=row["db_name"])
            self.event(lease, "granted", owner=owner_tag())
            if waiter_id is not None:
                self.q("leave_queue", {"waiter_id": waiter_id})
            return lease

    # -- waiting in line (migration 002) -------------------------------------------------------

    def my_turn(self, slot_ids: Sequence[str], waiter_id: int | None) -> bool:
        row = self.one("my_turn", {"slot_ids": list(slot_ids), "waiter_id": waiter_id})
        return bool(row and row["ok"])

    def enqueue(self, run_id: str, ttl: float) -> int:
        self.q("purge_waiters")
        row = self.one("enqueue_waiter", {"run_id": run_id, "owner": owner_tag(), "ttl": ttl})
        assert row is not None
        return int(row["waiter_id"])

    def keep_place(self, run_id: str, waiter_id: int, ttl: float) -> int:
        """Heartbeat our place in line; a place that lapsed (we were paused) is given up and we
        queue again at the back."""
        if self.one("waiter_heartbeat", {"waiter_id": waiter_id, "ttl": ttl}) is not None:
            return waiter_id
        self.q("leave_queue", {"waiter_id": waiter_id})
        return self.enqueue(run_id, ttl)

    def wait_for_notify(self, channel: str, timeout: float) -> None:
        """Block until a notification on ``channel`` arrives or ``timeout`` seconds pass."""
        try:
            from psycopg import sql

            self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            for _ in self.conn.notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from exc

    def leave_queue(self, waiter_id: int) -> None:
        with self.transaction():
            self.q("leave_queue", {"waiter_id": waiter_id})
            self.conn.execute("SELECT pg_notify('preview_slots_released', 'queue')")

    def heartbeat(self, lease: Lease, ttl: float) -> datetime | None:
        row = self.one("heartbeat", {"lease_id": lease.lease_id, "generation": lease.generation,
                                     "ttl": ttl})
        return row["expires_at"] if row else None

    def still_holds(self, lease: Lease, state: LeaseState = LeaseState.RESETTING) -> bool:
        return self.one("fence_check", {"lease_id": lease.lease_id,
                                        "generation": lease.generation,
                                        "state": state.value}) is not None

    def mark_ready(self, lease: Lease, ttl: float, reset_id: int | None) -> Lease | None:
        with self.transaction():
            row = self.one("mark_ready", {"lease_id": lease.lease_id,
                                          "generation": lease.generation, "ttl": ttl,
                                          "reset_id": reset_id})
            if row is None:
                return None
            ready = Lease.from_row(row)
            self.event(ready, "ready", reset_id=reset_id)
            self.q("reset_failures_clear", {"slot_id": lease.slot_id})
            return ready

    def end_lease(self, lease: Lease, state: LeaseState, reason: str) -> bool:
        with self.transaction():
            row = self.one("end_lease", {"lease_id": lease.lease_id, "state": state.value,
                                         "reason": reason})
            if row is None:
                return False
            self.q("slot_released", {"slot_id": lease.slot_id})
            self.event(lease, state.value, reason=reason)
            self.q("abandon_orphan_resets")
            self.conn.execute("SELECT pg_notify('preview_slots_released', %s)", (lease.slot_id,))
            return True

    def release(self, run_id: str) -> list[Row]:
        with self.transaction():
            rows = self.q("release_run", {"run_id": run_id})
            for row in rows:
                self.q("slot_released", {"slot_id": row["slot_id"]})
                self.event(row, "released")
                self.conn.execute("SELECT pg_notify('preview_slots_released', %s)",
                                  (row["slot_id"],))
            self.q("abandon_orphan_resets")
        return rows

    def renew(self, run_id: str, ttl: float) -> Lease | None:
        with self.transaction():
            self.expire()
            row = self.one("renew", {"run_id": run_id, "ttl": ttl})
            if row is None:
                return None
            db = self.config.slot(row["slot_id"]).database
            lease = Lease.from_row(row, db_name=db)
            self.event(lease, "renewed", ttl=ttl)
            return lease

    def record_failure(self, slot_id: str) -> tuple[str, int]:
        row = self.one("reset_failures_bump", {"slot_id": slot_id,
                                               "limit": self.config.lease.quarantine_after})
        assert row is not None
        return str(row["status"]), int(row["consecutive_failures"])

    def unquarantine(self, slot_id: str) -> bool:
        return self.one("unquarantine", {"slot_id": slot_id}) is not None

    # -- provenance ---------------------------------------------------------------------------

    def start_reset(self, *, run_id: str, slot_id: str, db_name: str, strategy: str,
                    seed_version: str | None, snapshot_version: str | None,
                    lease: Lease | None, details: Mapping[str, Any]) -> int:
        row = self.one("insert_reset", {
            "run_id": run_id, "slot_id": slot_id, "db_name": db_name, "strategy": strategy,
            "seed_version": seed_version, "snapshot_version": snapshot_version,
            "lease_id": lease.lease_id if lease else None,
            "generation": lease.generation if lease else None, "details": Jsonb(dict(details)),
        })
        assert row is not None
        return int(row["id"])

    def finish_reset(self, reset_id: int, status: ResetStatus, details: Mapping[str, Any]) -> bool:
        return self.one("finish_reset", {"id": reset_id, "status": status.value,
                                         "details": Jsonb(dict(details))}) is not None

    def status(self) -> list[Row]:
        return self.q("status", {"slot_ids": list(self.config.slot_ids)})

    def history(self, *, slot_id: str | None, run_id: str | None, limit: int) -> list[Row]:
        return self.q("history", {"slot_id": slot_id, "run_id": run_id, "limit": limit})

    def last_reset(self, slot_id: str) -> Row | None:
        return self.one("last_reset", {"slot_id": slot_id})

    def holders(self) -> list[Row]:
        return self.q("holders")


def seconds(value: timedelta | None) -> float | None:
    return value.total_seconds() if value is not None else None
