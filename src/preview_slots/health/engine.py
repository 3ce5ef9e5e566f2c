"""Run the checks: every probe of every selected slot at once on a thread pool, then the
verdicts; ``--wait`` repeats for the slots still unhealthy, with backoff, until a deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from preview_slots.config import Config, Slot
from preview_slots.errors import PreviewSlotsError
from preview_slots.health import verdicts
from preview_slots.health.model import (
    ALL_CHECKS,
    READINESS_CHECKS,
    CheckName,
    CheckResult,
    HealthReport,
    HealthTimeout,
    SlotHealth,
)
from preview_slots.health.probe import (
    ProbeFailure,
    Response,
    fetch_caddy_config,
    http_get,
    upstreams_for,
)
from preview_slots.runtime.base import ServiceManager, ServiceState

LastReset = Callable[[str], Mapping[str, Any] | None]
"""Returns the newest ``preview_db_resets`` row of a slot as a mapping, or None."""

Clock = Callable[[], float]
Sleep = Callable[[float], None]
OnAttempt = Callable[[int, Sequence[SlotHealth]], None]

T = TypeVar("T")
MAX_WORKERS = 32
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 2.0


@dataclass(frozen=True)
class _Outcome:
    """A call made on a worker thread: its value, or the message of a known error."""

    value: Any = None
    error: str | None = None
    latency: float | None = None


def _call(fn: Callable[[], T]) -> _Outcome:
    started = time.monotonic()
    try:
        return _Outcome(value=fn(), latency=time.monotonic() - started)
    except PreviewSlotsError as exc:
        return _Outcome(error=exc.message, latency=time.monotonic() - started)
    except OSError as exc:
        return _Outcome(error=exc.strerror or str(exc), latency=time.monotonic() - started)


def direct_target(config: Config, slot: Slot, path: str | None = None) -> str:
    return f"http://127.0.0.1:{slot.port}{path or config.health.path}"


def routed_target(config: Config, slot: Slot) -> str:
    caddy = config.caddy
    scheme, port = ("http", caddy.http_port) if caddy.tls == "off" else ("https", caddy.https_port)
    sni = "" if scheme == "http" else f", SNI {slot.host}"
    address = f"[{caddy.proxy_address}]" if ":" in caddy.proxy_address else caddy.proxy_address
    return f"{scheme}://{address}:{port}{config.health.path} (Host {slot.host}{sni})"


def _routed_get(config: Config, slot: Slot, timeout: float) -> Response | ProbeFailure:
    caddy = config.caddy
    tls = caddy.tls != "off"
    return http_get(
        caddy.proxy_address,
        caddy.https_port if tls else caddy.http_port,
        config.health.path,
        timeout=timeout,
        host=slot.host,
        tls=tls,
        verify=caddy.tls == "auto",
    )


class _CaddyConfig:
    """Caddy's live config, fetched at most once per round and only if a routed check fails."""

    def __init__(self, admin: str, timeout: float) -> None:
        self._admin = admin
        self._timeout = timeout
        self._lock = threading.Lock()
        self._fetched = False
        self._config: dict[str, Any] | None = None

    def upstreams(self, host: str) -> list[str] | None:
        with self._lock:
            if not self._fetched:
                self._config = fetch_caddy_config(self._admin, timeout=self._timeout)
                self._fetched = True
        return upstreams_for(self._config, host)


def check_slots(
    config: Config,
    slots: Sequence[Slot] | None = None,
    *,
    manager: ServiceManager | None = None,
    last_reset: LastReset | None = None,
    timeout: float | None = None,
    checks: Collection[CheckName] = ALL_CHECKS,
    pool: ThreadPoolExecutor | None = None,
) -> tuple[SlotHealth, ...]:
    """Check ``slots`` (default: all) once, every probe concurrently. Never raises for an
    unhealthy slot: the verdicts say what is wrong."""
    chosen = tuple(slots) if slots is not None else config.slots
    per_request = timeout if timeout is not None else config.health.timeout
    own_pool = pool is None
    executor = pool or ThreadPoolExecutor(
        max_workers=min(MAX_WORKERS, max(1, 5 * len(chosen))),
        thread_name_prefix="health",
    )
    try:
        wanted = set(checks)
        jobs = [_submit(executor, config, slot, manager=manager, last_reset=last_reset,
                        timeout=per_request, checks=wanted) for slot in chosen]
        caddy = _CaddyConfig(config.caddy.admin, per_request)
        return tuple(_judge(config, slot, job, manager=manager, last_reset=last_reset,
                            caddy=caddy, checks=wanted)
                     for slot, job in zip(chosen, jobs, strict=True))
    finally:
        if own_pool:
            executor.shutdown(wait=True)


def _submit(
    pool: ThreadPoolExecutor,
    config: Config,
    slot: Slot,
    *,
    manager: ServiceManager | None,
    last_reset: LastReset | None,
    timeout: float,
    checks: set[CheckName],
) -> dict[str, Future[Any]]:
    jobs: dict[str, Future[Any]] = {}
    path = config.health.path
    wants_http = checks & {CheckName.DIRECT, CheckName.ROUTED, CheckName.DATABASE}
    if wants_http:
        jobs["direct"] = pool.submit(http_get, "127.0.0.1", slot.port, path, timeout=timeout)
    if CheckName.ROUTED in checks and config.caddy.enabled:
        jobs["routed"] = pool.submit(_routed_get, config, slot, timeout)
    if CheckName.DATABASE in checks and config.health.database_path:
        jobs["database"] = pool.submit(http_get, "127.0.0.1", slot.port,
                                       config.health.database_path, timeout=timeout)
    if manager is not None:
        if CheckName.SERVICE in checks:
            jobs["service"] = pool.submit(_call, lambda: manager.state(slot))
        if CheckName.DATABASE in checks:
            jobs["environment"] = pool.submit(_call, lambda: manager.environment(slot))
    if CheckName.PROVENANCE in checks and last_reset is not None:
        jobs["provenance"] = pool.submit(_call, lambda: last_reset(slot.id))
    return jobs


def _judge(
    config: Config,
    slot: Slot,
    jobs: dict[str, Future[Any]],
    *,
    manager: ServiceManager | None,
    last_reset: LastReset | None,
    caddy: _CaddyConfig,
    checks: set[CheckName],
) -> SlotHealth:
    got = {key: job.result() for key, job in jobs.items()}
    direct: Response | ProbeFailure | None = got.get("direct")
    results: list[CheckResult] = []
    for name in ALL_CHECKS:
        if name not in checks:
            results.append(verdicts.skipped(name, "not checked"))
        elif name is CheckName.DIRECT:
            assert direct is not None
            results.append(verdicts.direct_verdict(slot, direct, direct_target(config, slot)))
        elif name is CheckName.ROUTED:
            if not config.caddy.enabled:
                results.append(verdicts.skipped(name, "caddy.enabled = false"))
                continue
            results.append(verdicts.routed_verdict(
                slot, got["routed"], routed_target(config, slot), direct=direct,
                lookup=lambda: caddy.upstreams(slot.host),
            ))
        elif name is CheckName.SERVICE:
            outcome: _Outcome | None = got.get("service")
            state: ServiceState | None = outcome.value if outcome else None
            results.append(verdicts.service_verdict(
                slot.unit, state, outcome.error if outcome else None,
                manager.name if manager is not None else None,
                outcome.latency if outcome else None,
            ))
        elif name is CheckName.DATABASE:
            env: _Outcome | None = got.get("environment")
            report = got.get("database", direct)
            results.append(verdicts.database_verdict(
                slot, report,
                direct_target(config, slot, config.health.database_path),
                environment=env.value if env else None,
                env_error=env.error if env else None,
                owner_of=lambda db: getattr(config.slot_for_database(db), "id", None),
            ))
        elif name is CheckName.PROVENANCE:
            prov: _Outcome | None = got.get("provenance")
            results.append(verdicts.provenance_verdict(
                slot, prov.value if prov else None, prov.error if prov else None,
                enabled=last_reset is not None, latency=prov.latency if prov else None,
            ))
    return SlotHealth(slot=slot.id, host=slot.host, port=slot.port, checks=tuple(results))


def check_until(
    config: Config,
    slots: Sequence[Slot] | None = None,
    *,
    wait: float = 0.0,
    manager: ServiceManager | None = None,
    last_reset: LastReset | None = None,
    timeout: float | None = None,
    checks: Collection[CheckName] = ALL_CHECKS,
    on_attempt: OnAttempt | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> HealthReport:
    """Check, and while some slot is unhealthy and ``wait`` seconds have not passed, check the
    unhealthy ones again with growing pauses (0.25s doubling to 2s). Returns the last verdicts."""
    chosen = tuple(slots) if slots is not None else config.slots
    per_request = timeout if timeout is not None else config.health.timeout
    pool = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, max(1, 5 * len(chosen))),
                              thread_name_prefix="health")

    def one_round(pending: Sequence[Slot], request_timeout: float) -> tuple[SlotHealth, ...]:
        return check_slots(config, pending, manager=manager, last_reset=last_reset,
                           timeout=request_timeout, checks=checks, pool=pool)

    try:
        return retry_rounds(chosen, one_round, wait=wait, timeout=per_request,
                            on_attempt=on_attempt, clock=clock, sleep=sleep)
    finally:
        pool.shutdown(wait=True)


Round = Callable[[Sequence[Slot], float], "tuple[SlotHealth, ...]"]


def retry_rounds(
    slots: Sequence[Slot],
    one_round: Round,
    *,
    wait: float,
    timeout: float,
    on_attempt: OnAttempt | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> HealthReport:
    """The ``--wait`` loop: run a round for all slots, then only for the unhealthy ones, pausing
    0.25s, 0.5s, 1s, 2s, 2s... and never past the deadline; no request outlives it by more than
    0.2s. Slots keep their last verdict; a slot once healthy is not asked again."""
    started = clock()
    deadline = started + wait
    latest = {h.slot: h for h in one_round(slots, timeout)}
    attempts = 1
    pause = BACKOFF_FIRST
    while True:
        if on_attempt is not None:
            on_attempt(attempts, [latest[s.id] for s in slots])
        pending = [slot for slot in slots if not latest[slot.id].healthy]
        left = deadline - clock()
        if not pending or left <= 0:
            break
        sleep(min(pause, left))
        pause = min(pause * 2, BACKOFF_MAX)
        left = deadline - clock()
        for health in one_round(pending, min(timeout, max(0.2, left))):
            latest[health.slot] = health
        attempts += 1
    return HealthReport(slots=tuple(latest[s.id] for s in slots), elapsed=clock() - started,
                        attempts=attempts)


def wait_until_routed_healthy(
    config: Config,
    slot: Slot,
    manager: ServiceManager | None,
    timeout: float,
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> SlotHealth:
    """Readiness before a URL is handed out: wait up to ``timeout`` seconds until the slot
    answers directly and through Caddy as itself, its service is running and it uses its own
    database. Returns the passing verdicts; raises :class:`HealthTimeout` (an ``Unhealthy``,
    exit 1) naming the checks that still fail, with the last verdicts in ``.health``."""
    report = check_until(config, [slot], wait=timeout, manager=manager,
                         checks=READINESS_CHECKS, clock=clock, sleep=sleep)
    health = report.slots[0]
    if not health.healthy:
        raise HealthTimeout(health, report.elapsed)
    return health


