"""Resetting a slot's database under a lease: fenced, recorded, built before anything is destroyed.

A rebuild never touches the live slot database until the new one is complete:

1. take the slot's advisory lock on the slot server (a stale holder with a lower generation is
   terminated), then check the lease (generation) in the control plane;
2. record the attempt in ``preview_db_resets`` as ``running``;
3. build ``<prefix>build_<slot>``: create it (marked with our generation), load the seed or
   snapshot into it (the seeding transaction re-checks the marker first);
4. check the lease again, stop the slot's service, refuse connections to the slot database,
   terminate its sessions, rename it away and rename the build into its place;
5. drop the old database; record ``succeeded`` (or ``failed`` with the error and phase timings).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import sql

from preview_slots import __version__, failpoints
from preview_slots.config import Config, Slot
from preview_slots.controlplane import ControlPlane, Lease, ResetStatus
from preview_slots.errors import LeaseLost, PreviewSlotsError, ResetFailed, SafetyRefusal
from preview_slots.pgadmin import (
    SlotServer,
    build_name,
    marker,
    old_name,
    server_lost,
    slot_lock,
)
from preview_slots.redact import mask
from preview_slots.runner import spawn_detached
from preview_slots.sources import Source, apply_seed, libpq_env, restore_snapshot, tool

log = logging.getLogger(__name__)

Mode = Literal["rebuild", "apply"]
TRUST_MARGIN = 0.2  # stop acting when less than this fraction of the reset TTL is left


class Fence:
    """Keeps a resetting lease alive and says, before each destructive step, whether we still
    hold it. Heartbeats run on their own connection every ``reset_ttl / 6``; a renewal that finds
    the lease gone or taken marks it lost. Locally, a monotonic trust window bounds how long we
    act on the last good renewal (a paused process cannot outlive it)."""

    def __init__(self, config: Config, cp: ControlPlane, lease: Lease) -> None:
        self.config = config
        self.cp = cp
        self.lease = lease
        self.ttl = config.lease.reset_ttl
        self._last_ok = time.monotonic()
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Fence:
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _beat(self) -> None:
        beat_cp = ControlPlane(self.config)
        try:
            while not self._stop.wait(self.config.lease.heartbeat_interval):
                attempt = time.monotonic()  # the trust window counts from when we asked
                try:
                    expires = beat_cp.heartbeat(self.lease, self.ttl)
                except PreviewSlotsError as exc:
                    log.warning("heartbeat failed (will retry): %s", exc.message)
                    beat_cp.close()
                    continue
                if expires is None:
                    self._lost = "the lease was released, expired or taken by another run"
                    return
                self._last_ok = attempt
        finally:
            beat_cp.close()

    def check(self, step: str) -> None:
        if self._lost:
            raise LeaseLost(f"lease lost before {step}: {self._lost}; stopped without changing "
                            "anything further")
        if time.monotonic() - self._last_ok > self.ttl * (1 - TRUST_MARGIN):
            # nothing renewed within the trust window (a starved heartbeat thread, or we were
            # paused): act only on a renewal that succeeds now, by the control plane's clock
            attempt = time.monotonic()
            if self.cp.heartbeat(self.lease, self.ttl) is None:
                self._lost = ("no successful heartbeat within the reset TTL, and the lease "
                              "has expired or was taken since")
                raise LeaseLost(f"lease lost before {step}: {self._lost}; stopped without "
                                "changing anything further")
            self._last_ok = attempt
        elif not self.cp.still_holds(self.lease):
            self._lost = "the lease is no longer ours (released, expired or taken over)"
            raise LeaseLost(f"lease lost before {step}: {self._lost}")
        # a check confirms the lease still stands; only a renewal extends the trust window


@dataclass
class ResetOutcome:
    reset_id: int
    status: ResetStatus
    details: dict[str, Any]


@dataclass
class _Phases:
    durations: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.durations[name] = round(time.monotonic() - started, 4)


ServiceHook = Callable[[Slot], None]


def run_reset(
    config: Config,
    cp: ControlPlane,
    fence: Fence,
    slot: Slot,
    source: Source | None,
    *,
    mode: Mode = "rebuild",
    stop_service: ServiceHook | None = None,
    adopt: bool = False,
) -> ResetOutcome:
    """Reset (``rebuild``) or load into (``apply``) the slot's database under ``fence.lease``.
    ``adopt``: a rebuild may replace a slot database that preview-slots did not make.

    Raises :class:`ResetFailed` / :class:`LeaseLost` after recording the outcome."""
    lease = fence.lease
    phases = _Phases()
    details: dict[str, Any] = {
        "tool_version": __version__, "host": socket.gethostname(), "mode": mode,
        "generation": lease.generation, "lease_id": lease.lease_id,
    }
    if source is not None:
        details["checksum"] = source.checksum
        details["files"] = [p.name for p in source.files]
    strategy = source.kind if source else "empty"
    app_name = f"preview-slots reset slot={slot.id} gen={lease.generation}"
    reset_id: int | None = None
    server: SlotServer | None = None
    try:
        # a stale holder resumed here must not even reach the slot server (C-12)
        fence.check("connecting to the slot server")
        with phases.phase("connect"):
            server = SlotServer(config, application_name=app_name)
            try:
                details["server_version"] = server.server_version()
                server.lock_slot(slot, lease.generation)
            except psycopg.OperationalError as exc:
                raise server_lost(config, exc) from exc
        fence.check("the first destructive step")
        reset_id = cp.start_reset(
            run_id=lease.run_id, slot_id=slot.id, db_name=slot.database, strategy=strategy,
            seed_version=source.seed_version if source else None,
            snapshot_version=source.snapshot_version if source else None,
            lease=lease, details=details,
        )
        try:
            if mode == "rebuild":
                if not adopt:
                    _refuse_foreign(server, slot)
                _rebuild(config, server, fence, slot, source, phases, app_name, stop_service,
                         details)
            else:
                assert source is not None and source.kind == "seed"
                fence.check("seed")
                with phases.phase("load"):
                    failpoints.hit_later("mid_seed")
                    apply_seed(config, source, slot.database, prelude=None,
                               application_name=app_name)
        except psycopg.Error as exc:
            if server.conn.broken:  # the server went away (or ended our session): not the slot
                raise server_lost(config, exc) from exc
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ResetFailed(f"reset of {slot.database} failed: {first}",
                              phase=next(reversed(phases.durations), "connect"),
                              sqlstate=exc.sqlstate) from exc
        failpoints.hit("before_ready")
        details["phases"] = phases.durations
        return ResetOutcome(reset_id, ResetStatus.SUCCEEDED, details)
    except PreviewSlotsError as exc:
        details["phases"] = phases.durations
        details["error"] = mask(exc.message)
        if isinstance(exc, ResetFailed):
            details["failed_phase"] = exc.phase
            if exc.sqlstate:
                details["sqlstate"] = exc.sqlstate
        if reset_id is not None:
            cp.finish_reset(reset_id, ResetStatus.FAILED, details)
        if server is not None and mode == "rebuild" and not isinstance(exc, LeaseLost):
            _cleanup_build(server, config, slot)
        raise
    finally:
        if server is not None:
            server.close()


def _refuse_foreign(server: SlotServer, slot: Slot) -> None:
    """A slot database that preview-slots did not make (it carries no ``preview-slots ...``
    comment) and that holds anything is replaced only when the caller says so (``--adopt``): a
    config that points a slot at some other database must not cost that database its content.
    An empty one (as a fresh host or ``local up`` has) is taken as it is."""
    if (server.comment(slot.database) or "").startswith("preview-slots "):
        return  # ours (the usual case: one query)
    if not server.exists(slot.database):
        return
    held = server.relations(slot.database)
    if held:
        raise SafetyRefusal(
            f"slot {slot.id}'s database {slot.database} was not made by preview-slots (it has no "
            f"preview-slots comment) and holds {held} table(s) or other relation(s): it is not "
            "replaced unless you say so. If this slot may replace it, run the command once more "
            f"with --adopt; if not, change slots.{slot.id}.database in the configuration")


def _rebuild(config: Config, server: SlotServer, fence: Fence, slot: Slot, source: Source | None,
             phases: _Phases, app_name: str, stop_service: ServiceHook | None,
             details: dict[str, Any]) -> None:
    build, old = build_name(config, slot), old_name(config, slot)
    generation = fence.lease.generation
    with phases.phase("prepare"):
        fence.check(f"dropping {build}")
        for leftover in (build, old):
            if server.exists(leftover):
                server.drop(leftover)
    if source is not None and config.cache.templates:
        _build_from_cache(config, server, fence, slot, source, phases, app_name, details)
    else:
        with phases.phase("create"):
            fence.check(f"creating {build}")
            server.create(build, comment=marker(slot, generation))
        failpoints.hit("after_create")
        if source is not None:
            fence.check("loading")
            with phases.phase("load"):
                failpoints.hit_later("mid_seed")
                if source.kind == "seed":
                    apply_seed(config, source, build, prelude=_prelude(slot, generation),
                               application_name=app_name)
                else:
                    restore_snapshot(config, source, build, application_name=app_name)
    failpoints.hit("before_swap")
    with phases.phase("swap"):
        if stop_service is not None:
            with phases.phase("stop_service"):
                stop_service(slot)
        fence.check(f"swapping {build} into {slot.database}")
        server.swap_in(build, slot.database, old)
    failpoints.hit("after_swap")


def _build_from_cache(config: Config, server: SlotServer, fence: Fence, slot: Slot,
                      source: Source, phases: _Phases, app_name: str,
                      details: dict[str, Any]) -> None:
    """Fill ``<prefix>build_<slot>`` from the template cache: take the slot's warm spare when it
    was cloned from the right template, else clone the template (building it first if needed)."""
    from preview_slots import cache

    build, generation = build_name(config, slot), fence.lease.generation
    with phases.phase("template"):
        template, built = cache.ensure_template(config, server, source, app_name)
    details.update(template=template, template_built=built, clone="template")
    if config.cache.spares:
        with phases.phase("spare"), cache.spare_lock(server, slot, wait=False) as got:
            spare = cache.find_spare(config, server, slot, template) if got else None
            if spare is not None:
                fence.check(f"taking spare {spare.name}")
                server.rename(spare.name, build)
                server.set_comment(build, marker(slot, generation))
                details.update(clone="spare", spare_built_at=spare.built_at)
    if details["clone"] == "template":
        with phases.phase("clone"):
            fence.check(f"cloning {template} into {build}")
            cache.clone(config, server, template, build, marker(slot, generation))
    failpoints.hit("after_create")


def drop_leftover(config: Config, slot: Slot) -> None:
    """Drop the slot's previous database, renamed away by the swap: after the slot is ready.

    Dropping removes the database's files, which takes about as long as writing them did (a
    second for 750 MiB), so with ``[cache] background_prewarm`` (work after a reset is done in
    the background) a detached psql drops it and nobody waits: it holds the slot's reset lock
    while it drops, so a reset of the slot that comes meanwhile waits for it. If it fails, the
    next reset of the slot drops the leftover. Without background work it is dropped here."""
    name = old_name(config, slot)
    app_name = f"preview-slots cleanup slot={slot.id}"
    try:
        with SlotServer(config, application_name=app_name) as s:
            if not s.exists(name):
                return
            if not config.cache.background_prewarm:
                s.drop(name)
                return
            s.guard.check(name)
            namespace, key = slot_lock(slot)
            statements = [sql.SQL("SELECT pg_advisory_lock({}, {})").format(namespace, key),
                          sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                              sql.Identifier(name))]
            argv = [tool(config, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
            for statement in statements:  # separate -c: DROP DATABASE runs outside a transaction
                argv += ["-c", statement.as_string(s.conn)]
            spawn_detached(argv, env=libpq_env(config.database.url, app_name))
    except PreviewSlotsError as exc:  # the next reset of the slot drops it anyway
        log.warning("could not drop %s yet: %s", name, exc.message)


def _prelude(slot: Slot, generation: int) -> str:
    from preview_slots.sources import fence_prelude

    return fence_prelude(marker(slot, generation))


def _cleanup_build(server: SlotServer, config: Config, slot: Slot) -> None:
    try:
        name = build_name(config, slot)
        if server.exists(name):
            server.drop(name)
    except Exception as exc:  # best effort: the next reset drops it anyway
        log.warning("could not drop the half-built database: %s", mask(str(exc)))
