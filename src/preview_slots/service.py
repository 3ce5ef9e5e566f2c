"""The operations the CLI offers, as library functions: allocate, release, renew, db commands.

Each takes the frozen :class:`Config` and plain values, and returns a typed result. Nothing here
prints or exits.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from psycopg import errors as pg_errors

from preview_slots import failpoints
from preview_slots.config import Config, Slot, validate_run_id
from preview_slots.controlplane import ControlPlane, Lease, LeaseState, ResetStatus, Row
from preview_slots.durations import format_duration
from preview_slots.errors import (
    DatabaseUnavailable,
    Interrupted,
    LeaseLost,
    NoSlotFree,
    PreviewSlotsError,
    ResetFailed,
    SafetyRefusal,
    SlotLeasedToOther,
    SlotQuarantined,
    UsageError,
)
from preview_slots.reset import Fence, Mode, ResetOutcome, drop_leftover, run_reset
from preview_slots.sources import Source, resolve_seed, resolve_snapshot

log = logging.getLogger(__name__)

Strategy = Literal["seed", "snapshot"]
CONTENDED_WAIT = 10.0  # a concurrent claim holds a row lock for milliseconds; lock_timeout is 10s


@dataclass(frozen=True)
class SourceRequest:
    strategy: Strategy
    seed_version: str | None = None
    snapshot_version: str | None = None

    def resolve(self, config: Config, *, remember: bool = True) -> Source:
        """Find the version and check it can be loaded, before anything is claimed or dropped
        (``remember``: its checksum may be stored for the next command; not in a dry run)."""
        source = self._find(config, remember)
        if source.extensions:
            from preview_slots.pgadmin import SlotServer
            from preview_slots.sources import check_extensions

            with SlotServer(config) as server:
                check_extensions(source, server.available_extensions())
        return source

    def _find(self, config: Config, remember: bool) -> Source:
        if self.strategy == "seed":
            if not self.seed_version or self.snapshot_version:
                raise UsageError("--strategy seed needs --seed-version (and no --snapshot-version)")
            return resolve_seed(config, self.seed_version, remember=remember)
        if not self.snapshot_version or self.seed_version:
            raise UsageError("--strategy snapshot needs --snapshot-version "
                             "(and no --seed-version)")
        return resolve_snapshot(config, self.snapshot_version, remember=remember)


@dataclass
class Allocation:
    run_id: str
    slot_id: str
    url: str
    db_name: str
    strategy: str | None
    seed_version: str | None
    snapshot_version: str | None
    reset_id: int | None
    reset_status: str | None
    lease_expires_at: str | None
    generation: int
    reused: bool
    dry_run: bool = False
    checksum: str | None = None
    plan: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def slot_url(config: Config, slot: Slot) -> str:
    caddy = config.caddy
    if caddy.tls == "off":
        port = "" if caddy.http_port == 80 else f":{caddy.http_port}"
        return f"http://{slot.host}{port}"
    port = "" if caddy.https_port == 443 else f":{caddy.https_port}"
    return f"https://{slot.host}{port}"


def init(config: Config) -> dict[str, Any]:
    cp = ControlPlane(config)
    created = cp.ensure_database()
    with cp:
        applied = cp.migrate()
        cp.sync_slots()
        version = cp.schema_version()
    return {"created_database": created, "applied": applied, "schema_version": version,
            "control_plane": config.control_plane.masked()}


def _open(config: Config) -> ControlPlane:
    cp = ControlPlane(config)
    cp.require_schema()
    return cp


def _holders_text(cp: ControlPlane) -> str:
    holders = cp.holders()
    if not holders:
        return "no live leases (slots may be quarantined: see `preview-slots status`)"
    return "; ".join(
        f"{h['slot_id']} held by {h['run_id']} ({h['state']}, expires in "
        f"{format_duration(h['remaining'].total_seconds())})" for h in holders)


def _wait_for_release(cp: ControlPlane, timeout: float) -> None:
    """LISTEN for a release notification, or until ``timeout`` (polling is the fallback)."""
    if timeout > 0:
        cp.wait_for_notify("preview_slots_released", timeout)


def _waiter_ttl(config: Config) -> float:
    """How long a place in line outlives its last heartbeat (one per poll, at the latest)."""
    return 3 * config.lease.poll_interval + 1


def _leave_queue(cp: ControlPlane, waiter: int | None) -> None:
    if waiter is not None:
        try:
            cp.leave_queue(waiter)
        except PreviewSlotsError as exc:  # our place lapses by itself once it stops heartbeating
            log.debug("could not leave the queue: %s", exc.message)


def _existing(cp: ControlPlane, run_id: str, want: SourceRequest | None) -> Row | None:
    with cp.transaction():
        cp.expire()
    row = cp.live_lease_for_run(run_id)
    if row is None or want is None:
        return row
    asked = (want.strategy, want.seed_version, want.snapshot_version)
    held = (row["strategy"], row["seed_version"], row["snapshot_version"])
    if row["strategy"] is not None and asked != held:
        raise UsageError(
            f"run {run_id} already holds slot {row['slot_id']} loaded with "
            f"{row['strategy']} {row['seed_version'] or row['snapshot_version']}; release it first "
            "to load another version"
        )
    return row


def _allocation(config: Config, cp: ControlPlane, lease_row: Row | Lease, *, reused: bool,
                checksum: str | None = None) -> Allocation:
    lease = lease_row if isinstance(lease_row, Lease) else Lease.from_row(lease_row)
    slot = config.slot(lease.slot_id)
    reset = cp.one("history", {"slot_id": slot.id, "run_id": lease.run_id, "limit": 1})
    return Allocation(
        run_id=lease.run_id, slot_id=slot.id, url=slot_url(config, slot), db_name=slot.database,
        strategy=lease.strategy, seed_version=lease.seed_version,
        snapshot_version=lease.snapshot_version,
        reset_id=reset["id"] if reset else lease.reset_id,
        reset_status=reset["reset_status"] if reset else None,
        lease_expires_at=lease.expires_at.isoformat(), generation=lease.generation,
        reused=reused,
        checksum=checksum or (reset["details"].get("checksum") if reset else None),
    )


def allocate(
    config: Config,
    run_id: str,
    request: SourceRequest,
    *,
    wait: float = 0.0,
    ttl: float | None = None,
    dry_run: bool = False,
    stop_service: Callable[[Slot], None] | None = None,
    after_reset: Callable[[Slot, Lease], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
    adopt: bool = False,
) -> Allocation:
    """Lease a slot to ``run_id``, reset it from the requested source, and return it ready."""
    validate_run_id(run_id)
    if ttl is not None and ttl <= 0:
        raise UsageError("--ttl must be positive (a lease that has already expired is no lease)")
    source = request.resolve(config, remember=not dry_run)  # checked before anything is claimed
    hold = ttl if ttl is not None else config.lease.ttl
    with _open(config) as cp:
        if dry_run:
            return _allocate_plan(config, cp, run_id, request, source)
        cp.sync_slots()
        claimed = _claim_patiently(config, cp, run_id, request, source, wait, on_wait)
        if not isinstance(claimed, Lease):
            return _allocation(config, cp, claimed, reused=True)
        lease = claimed
        failpoints.hit("after_claim")
        slot = config.slot(lease.slot_id)
        outcome = _reset_under_lease(config, cp, lease, slot, source, "rebuild", hold,
                                     stop_service, after_reset, adopt)
        failpoints.hit("after_ready")
        ready = cp.live_lease_for_run(run_id)
        if ready is None:
            raise LeaseLost(f"run {run_id}'s lease ended (released or expired) right after its "
                            "reset: allocate again")
        result = _allocation(config, cp, ready, reused=False, checksum=source.checksum)
        result.reset_id = outcome.reset_id
        result.reset_status = outcome.status.value
        return result


def _claim_patiently(config: Config, cp: ControlPlane, run_id: str, request: SourceRequest,
                     source: Source, wait: float,
                     on_wait: Callable[[str], None] | None) -> Lease | Row:
    """``_claim_in_turn``, riding out control-plane outages (a restart, a failover) for as long as
    ``wait`` allows: nothing is held while waiting, so reconnecting and queueing again is safe. A
    claim that committed but whose reply was lost is found again as this run's own lease."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return _claim_in_turn(config, cp, run_id, request, source,
                                  max(0.0, deadline - time.monotonic()), on_wait)
        except DatabaseUnavailable as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            log.warning("%s; still waiting (%s left)", exc.message, format_duration(remaining))
            cp.close()
            time.sleep(min(config.lease.poll_interval, remaining))


def _claim_in_turn(config: Config, cp: ControlPlane, run_id: str, request: SourceRequest,
                   source: Source, wait: float,
                   on_wait: Callable[[str], None] | None) -> Lease | Row:
    """Claim a slot for ``run_id`` (a resetting lease), waiting up to ``wait`` seconds in line
    behind earlier waiters; or return the run's ready lease row when it already holds one."""
    deadline = time.monotonic() + wait
    announced = False
    waiter: int | None = None
    contended_since: float | None = None
    try:
        while True:
            if waiter is not None:
                waiter = cp.keep_place(run_id, waiter, _waiter_ttl(config))
            # in line and not our turn yet: two cheap queries per wake-up, nothing more
            if waiter is None or cp.my_turn(config.slot_ids, waiter):
                row = _existing(cp, run_id, request)
                if row is not None and row["state"] == LeaseState.READY:
                    return row
                if row is not None:  # another process of this run is resetting: wait for it
                    _leave_queue(cp, waiter)
                    waiter = None
                    if on_wait and not announced:
                        on_wait(f"run {run_id} is already being reset on slot {row['slot_id']} "
                                "by another process; waiting for it")
                        announced = True
                    time.sleep(min(0.2, config.lease.heartbeat_interval))
                    continue
                failpoints.hit("before_claim")
                try:
                    lease = cp.claim(run_id, slot_ids=config.slot_ids,
                                     ttl=config.lease.reset_ttl, strategy=request.strategy,
                                     seed_version=source.seed_version,
                                     snapshot_version=source.snapshot_version, waiter_id=waiter)
                except pg_errors.UniqueViolation:
                    time.sleep(random.uniform(0.001, 0.02))  # lost a race: look again
                    continue
                if lease is not None:
                    waiter = None  # the claim took our place in line with it
                    return lease
                now = time.monotonic()
                if (now - (contended_since or now) < CONTENDED_WAIT
                        and (cp.my_turn(config.slot_ids, waiter)
                             or cp.live_lease_for_run(run_id) is not None)):
                    # SKIP LOCKED passed over a free slot that a concurrent claim has locked (it
                    # may yet fail), or another process of this run just got a lease: look again.
                    # In this order: a claim that commits between the two looks makes the first
                    # say "no free slot" and the second see its lease.
                    contended_since = contended_since or now
                    time.sleep(random.uniform(0.005, 0.02))
                    continue
            remaining = deadline - time.monotonic()
            _refuse_if_all_quarantined(cp)
            if remaining <= 0:
                if cp.live_lease_for_run(run_id) is not None:
                    # another process of this run holds a lease by now: answer with it (the
                    # next look waits for its reset), never "no slot free" for our own slot
                    _leave_queue(cp, waiter)
                    waiter = None
                    continue
                within = f"within {format_duration(wait)}" if wait > 0 else \
                    "(pass --wait to wait for one)"
                raise NoSlotFree(f"no slot free for run {run_id} {within}: {_holders_text(cp)}")
            if waiter is None:
                waiter = cp.enqueue(run_id, _waiter_ttl(config))
            if on_wait and not announced:
                on_wait(f"all slots are busy ({_holders_text(cp)}); waiting up to "
                        f"{format_duration(remaining)}")
                announced = True
            _wait_for_release(cp, min(config.lease.poll_interval, remaining))
            contended_since = None
    finally:
        _leave_queue(cp, waiter)


def _refuse_if_all_quarantined(cp: ControlPlane) -> None:
    """Waiting is pointless when no slot can ever be handed out: say so at once (exit 4)."""
    rows = cp.status()
    if rows and all(r["status"] == "quarantined" for r in rows):
        names = ", ".join(r["slot_id"] for r in rows)
        raise SlotQuarantined(f"every slot is quarantined after repeated failed resets ({names}): "
                              "see `preview-slots history`, fix the cause, then "
                              "`preview-slots unquarantine --slot S`")


def _reset_under_lease(config: Config, cp: ControlPlane, lease: Lease, slot: Slot,
                       source: Source | None, mode: Mode, hold: float,
                       stop_service: Callable[[Slot], None] | None,
                       after_reset: Callable[[Slot, Lease], None] | None,
                       adopt: bool = False) -> ResetOutcome:
    """Run the reset with heartbeats; mark the lease ready only when everything succeeded."""
    try:
        with Fence(config, cp, lease) as fence:
            outcome = run_reset(config, cp, fence, slot, source, mode=mode,
                                stop_service=stop_service, adopt=adopt)
            if after_reset is not None:
                fence.check("readiness")
                after_reset(slot, lease)
            fence.check("marking the slot ready")
    except LeaseLost:
        raise
    except PreviewSlotsError as exc:
        cancelled = isinstance(exc, Interrupted)  # a cancelled job says nothing about the slot
        _fail_open_reset(cp, slot, lease, exc)  # before the lease ends (it would be 'abandoned')
        with cp.transaction():
            ended = cp.end_lease(lease, LeaseState.RELEASED if cancelled else LeaseState.FAILED,
                                 f"{'interrupted' if cancelled else 'reset failed'}: "
                                 f"{exc.message[:200]}")
            # neither a cancelled job nor an unreachable server says anything about the slot
            counts = ended and not cancelled and not isinstance(exc, DatabaseUnavailable) \
                and not (isinstance(exc, ResetFailed) and exc.blames_source)
            status, failures = cp.record_failure(slot.id) if counts else ("", 0)
        if not ended:  # the lease had already expired and was taken, or was released
            raise LeaseLost(f"lease lost during the reset of slot {slot.id}: another run holds "
                            f"it now or it was released; stopped ({exc.message})") from exc
        if status == "quarantined":
            exc.message += (f" (slot {slot.id} failed {failures} times in a row and is now "
                            f"quarantined: `preview-slots unquarantine --slot {slot.id}`)")
        raise
    with cp.transaction():  # ready and succeeded together: a crash between leaves neither
        ready = cp.mark_ready(lease, hold, outcome.reset_id)
        if ready is not None:
            cp.finish_reset(outcome.reset_id, ResetStatus.SUCCEEDED, outcome.details)
    if ready is None:
        cp.finish_reset(outcome.reset_id, ResetStatus.FAILED,
                        {**outcome.details, "error": "lease lost before marking ready"})
        raise LeaseLost("lease lost before marking the slot ready: another run holds it now")
    if mode == "rebuild":
        drop_leftover(config, slot)
    return outcome


def _fail_open_reset(cp: ControlPlane, slot: Slot, lease: Lease, exc: PreviewSlotsError) -> None:
    """A readiness failure happens after run_reset recorded success: say so in the row."""
    row = cp.one("history", {"slot_id": slot.id, "run_id": lease.run_id, "limit": 1})
    if row and row["reset_status"] == "running":
        details: dict[str, Any] = {"error": exc.message, "failed_phase": "readiness"}
        health = getattr(exc, "health", None)  # a readiness timeout carries the last verdicts
        if health is not None:
            details["health"] = health.to_dict()
        cp.finish_reset(row["id"], ResetStatus.FAILED, details)


def _allocate_plan(config: Config, cp: ControlPlane, run_id: str, request: SourceRequest,
                   source: Source) -> Allocation:
    existing = cp.live_lease_for_run(run_id)
    if existing is not None and existing["expires_at"] > existing["db_now"]:
        result = _allocation(config, cp, existing, reused=True)
        result.dry_run = True
        result.plan = [f"run {run_id} already holds slot {existing['slot_id']}: return it as is"]
        return result
    rows = cp.status()
    free = [r for r in rows if r["status"] == "active"
            and (r["run_id"] is None or r["remaining"].total_seconds() < 0)]
    if not free:
        raise NoSlotFree(f"dry run: no slot is free now: {_holders_text(cp)}")
    slot = config.slot(free[0]["slot_id"])
    plan = _reset_plan(config, slot, source, run_id)
    return Allocation(
        run_id=run_id, slot_id=slot.id, url=slot_url(config, slot), db_name=slot.database,
        strategy=request.strategy, seed_version=source.seed_version,
        snapshot_version=source.snapshot_version, reset_id=None, reset_status=None,
        lease_expires_at=None, generation=int(free[0]["generation"]) + 1, reused=False,
        dry_run=True, checksum=source.checksum, plan=plan,
    )


def _reset_plan(config: Config, slot: Slot, source: Source | None, run_id: str,
                mode: Mode = "rebuild") -> list[str]:
    from preview_slots.pgadmin import build_name, old_name

    build, old = build_name(config, slot), old_name(config, slot)
    what = f"{source.kind} {source.version} (sha256 {source.checksum[:12]})" if source else "nothing"
    if mode == "apply":
        return [f"lease slot {slot.id} for run {run_id}",
                f"record a running row in preview_db_resets for {slot.database}",
                f"apply {what} to {slot.database} in one transaction",
                "record the outcome"]
    steps = [
        f"lease slot {slot.id} for run {run_id} (generation +1)",
        f"record a running row in preview_db_resets for {slot.database}",
        *_build_plan(config, slot, source, build, what),
    ]
    managed = config.runtime.manager != "none"
    if managed and config.runtime.stop_before_reset:
        steps.append(f"stop service {slot.unit}")
    steps += [
        f"refuse connections to {slot.database}, terminate its sessions",
        f"rename {slot.database} to {old}, rename {build} to {slot.database}",
    ]
    if managed:
        steps.append(f"restart service {slot.unit}" + (
            " and wait until it answers through Caddy" if config.caddy.enabled else ""))
    steps += ["record succeeded and mark the lease ready", f"drop {old}"]
    return steps


def _build_plan(config: Config, slot: Slot, source: Source | None, build: str,
                what: str) -> list[str]:
    """How ``build`` would be filled, as the real run would decide it (read-only look-ups)."""
    if source is None or not config.cache.templates:
        return [f"create {build} from template0, marked with the new generation",
                f"load {what} into {build}" if source else f"leave {build} empty"]
    from preview_slots.cache import find_spare, template_for
    from preview_slots.pgadmin import SlotServer

    template = template_for(config, source)
    with SlotServer(config, application_name="preview-slots dry-run") as server:
        has_template = server.exists(template)
        spare = find_spare(config, server, slot, template) if has_template else None
    if spare is not None and config.cache.spares:
        return [f"rename the warm spare {spare.name} (built {spare.built_at}) to {build}"]
    steps = [] if has_template else [f"build template {template}: load {what} into it once"]
    return [*steps, f"clone {template} into {build} (strategy {config.cache.clone_strategy})"]


# -- release / renew / status / history ----------------------------------------------------------


def release(config: Config, run_id: str) -> list[Row]:
    validate_run_id(run_id)
    with _open(config) as cp:
        return cp.release(run_id)


def renew(config: Config, run_id: str, ttl: float | None) -> Lease:
    validate_run_id(run_id)
    if ttl is not None and ttl <= 0:
        raise UsageError("--ttl must be positive (to end a lease, use `release`)")
    with _open(config) as cp:
        lease = cp.renew(run_id, ttl if ttl is not None else config.lease.ttl)
        if lease is None:
            raise SafetyRefusal(f"run {run_id} holds no ready lease to renew (it expired, was "
                                "released, or was taken over): allocate again")
        return lease


def status(config: Config) -> list[Row]:
    with _open(config) as cp:
        return cp.status()


def history(config: Config, *, slot_id: str | None, run_id: str | None,
            limit: int) -> list[Row]:
    if slot_id is not None:
        config.slot(slot_id)
    with _open(config) as cp:
        return cp.history(slot_id=slot_id, run_id=run_id, limit=limit)


def reap(config: Config) -> dict[str, Any]:
    with _open(config) as cp, cp.transaction():
        expired = cp.expire()
    return {"expired_slots": expired}


def unquarantine(config: Config, slot_id: str) -> bool:
    config.slot(slot_id)
    with _open(config) as cp:
        return cp.unquarantine(slot_id)


# -- standalone database commands ------------------------------------------------------------------


def db_command(
    config: Config,
    slot_id: str,
    *,
    source_request: SourceRequest | None,
    run_id: str | None,
    mode: Mode,
    dry_run: bool = False,
    stop_service: Callable[[Slot], None] | None = None,
    after_reset: Callable[[Slot, Lease], None] | None = None,
    adopt: bool = False,
) -> dict[str, Any]:
    """``db reset`` / ``db seed`` / ``db reset-and-seed`` on one slot.

    Refuses a slot leased to another run unless that run id is given. A free slot is leased for
    the duration of the command (to ``run_id``, or ``manual-<slot>``) and released afterwards,
    unless ``run_id`` was given, in which case that run keeps it ready."""
    slot = config.slot(slot_id)
    if run_id is not None:
        validate_run_id(run_id)
    source = source_request.resolve(config, remember=not dry_run) if source_request else None
    with _open(config) as cp:
        if not dry_run:
            cp.sync_slots()
            with cp.transaction():
                cp.expire()
        holder = cp.live_lease_for_slot(slot.id)
        if holder is not None and holder["run_id"] != run_id:
            raise SlotLeasedToOther(
                f"slot {slot.id} is leased to run {holder['run_id']} until "
                f"{holder['expires_at']:%Y-%m-%d %H:%M:%S%z}: pass --run-id {holder['run_id']} "
                "to act for that run, or wait for it to be released"
            )
        status_row = next(r for r in cp.status() if r["slot_id"] == slot.id)
        if status_row["status"] == "quarantined" and holder is None:
            raise SlotQuarantined(f"slot {slot.id} is quarantined after repeated failures: "
                                  f"`preview-slots unquarantine --slot {slot.id}` first")
        owner = run_id or f"manual-{slot.id}"
        if dry_run:
            return {"dry_run": True, "slot_id": slot.id, "db_name": slot.database,
                    "plan": _reset_plan(config, slot, source, owner, mode)}
        keep = run_id is not None
        if holder is not None:
            lease = _retake(cp, config, Lease.from_row(holder), source_request)
        else:
            claimed = None
            try:
                claimed = cp.claim(owner, slot_ids=[slot.id], ttl=config.lease.reset_ttl,
                                   strategy=source_request.strategy if source_request else None,
                                   seed_version=source.seed_version if source else None,
                                   snapshot_version=source.snapshot_version if source else None,
                                   slot_id=slot.id)
            except pg_errors.UniqueViolation:
                claimed = None
            if claimed is None:
                raise SlotLeasedToOther(f"slot {slot.id} was just taken by another run; retry")
            lease = claimed
        outcome = _reset_under_lease(config, cp, lease, slot, source, mode,
                                     config.lease.ttl, stop_service, after_reset, adopt)
        if not keep:
            cp.release(owner)
        return {"slot_id": slot.id, "db_name": slot.database, "reset_id": outcome.reset_id,
                "reset_status": outcome.status.value, "run_id": owner,
                "strategy": source.kind if source else "empty",
                "seed_version": source.seed_version if source else None,
                "snapshot_version": source.snapshot_version if source else None,
                "checksum": source.checksum if source else None,
                "phases": outcome.details.get("phases", {}), "released": not keep}


def _retake(cp: ControlPlane, config: Config, held: Lease,
            request: SourceRequest | None) -> Lease:
    """The given run holds the slot (ready): start a new generation of its lease for this reset."""
    with cp.transaction():
        ended = cp.one("end_lease", {"lease_id": held.lease_id, "state": "released",
                                     "reason": "superseded by a reset of the same run"})
        if ended is None:
            raise SlotLeasedToOther(f"run {held.run_id}'s lease changed meanwhile; retry")
        cp.event(held, "superseded")
        lease = cp.claim(held.run_id, slot_ids=[held.slot_id], ttl=config.lease.reset_ttl,
                         strategy=request.strategy if request else held.strategy,
                         seed_version=request.seed_version if request else held.seed_version,
                         snapshot_version=request.snapshot_version if request
                         else held.snapshot_version, slot_id=held.slot_id)
    if lease is None:
        raise SlotLeasedToOther(f"slot {held.slot_id} was taken meanwhile; retry")
    return lease


# -- template cache ---------------------------------------------------------------------------------


def prewarm(config: Config, request: SourceRequest, slot_id: str | None) -> list[dict[str, Any]]:
    from preview_slots.cache import prewarm as build_spare

    if not config.cache.templates or not config.cache.spares:
        raise UsageError("warm spares are off in this config ([cache] templates and spares)")
    source = request.resolve(config)
    slots = [config.slot(slot_id)] if slot_id else list(config.slots)
    return [dict(build_spare(config, slot, source)) for slot in slots]


def current_templates(config: Config, *, remember: bool = True) -> set[str]:
    """The template names matching the seeds and snapshots as they are on disk now."""
    from preview_slots.cache import template_for

    names: set[str] = set()
    if config.seeds_dir.is_dir():
        for folder in config.seeds_dir.iterdir():
            try:
                names.add(template_for(config, resolve_seed(config, folder.name, remember=remember)))
            except PreviewSlotsError:
                continue
    if config.snapshots_dir.is_dir():
        for dump in config.snapshots_dir.glob("*.dump"):
            try:
                names.add(template_for(config, resolve_snapshot(config, dump.stem, remember=remember)))
            except PreviewSlotsError:
                continue
    return names


def prune_cache(config: Config, *, everything: bool, dry_run: bool) -> list[str]:
    from preview_slots.cache import prune

    return prune(config, set() if everything else current_templates(config, remember=not dry_run),
                 everything=everything, dry_run=dry_run)
