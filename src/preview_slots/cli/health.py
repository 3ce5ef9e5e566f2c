"""``preview-slots health``: direct, routed, service, database and provenance checks per slot."""

from __future__ import annotations

import argparse

from preview_slots.cli.context import Context
from preview_slots.errors import PreviewSlotsError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing would slow down `--help`
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from preview_slots.config import Config
    from preview_slots.controlplane import ControlPlane
    from preview_slots.health import SlotHealth
    from preview_slots.runtime.base import ServiceManager

CHECK_NAMES = ("direct", "routed", "service", "database", "provenance")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "health",
        help="check every slot directly and through Caddy (exit 0 only if all are healthy)",
        description="Per slot: direct (GET http://127.0.0.1:<port><path>), routed (the same path "
        "through Caddy with the slot's Host header, and SNI for https), service (the service "
        "manager's state), database (the slot serves from its own database) and provenance "
        "(its last reset succeeded). All slots are checked concurrently. Exit 0 only when every "
        "selected slot is healthy, 1 otherwise.",
    )
    parser.add_argument("--slot", action="append", metavar="S",
                        help="check only this slot (repeatable; default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--timeout", metavar="D",
                        help="timeout of each request (default: health.timeout, 5s)")
    parser.add_argument("--wait", metavar="D",
                        help="retry unhealthy slots with backoff until healthy or D has passed")
    parser.add_argument("--skip", action="append", choices=CHECK_NAMES, default=[],
                        metavar="CHECK",
                        help=f"do not run this check (repeatable; one of {', '.join(CHECK_NAMES)})")
    # Accepted after the command too, so the seed's script can pass it through.
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    parser.set_defaults(func=run_health)


def make_manager(config: Config) -> ServiceManager | None:
    """The configured service manager, or None when there is none to ask."""
    if config.runtime.manager == "none":
        return None
    from preview_slots.runtime.factory import make_manager as factory

    return factory(config)


class _LastResets:
    """The newest ``preview_db_resets`` row per slot, read through one control-plane connection
    shared by the worker threads (one query at a time). The control plane (and psycopg) is
    imported on first use, on a worker thread, while the HTTP probes are already running."""

    def __init__(self, config: Config) -> None:
        import threading

        self._config = config
        self._lock = threading.Lock()
        self._plane: ControlPlane | None = None
        self._error: PreviewSlotsError | None = None

    def __call__(self, slot_id: str) -> Mapping[str, Any] | None:
        with self._lock:
            if self._error is not None:  # one failed connection answers for every slot
                raise self._error
            if self._plane is None:
                from preview_slots.controlplane import ControlPlane

                plane = ControlPlane(self._config)
                try:
                    plane.require_schema()  # "run preview-slots init", not a crash
                except PreviewSlotsError as exc:
                    plane.close()
                    self._error = exc
                    raise
                self._plane = plane
            row = self._plane.last_reset(slot_id)
        return dict(row) if row is not None else None

    def close(self) -> None:
        with self._lock:
            if self._plane is not None:
                self._plane.close()


def _progress(ctx: Context, attempt: int, slots: Sequence[SlotHealth]) -> None:
    bad = [s for s in slots if not s.healthy]
    if bad:
        ctx.err(f"health: attempt {attempt}: waiting for "
                + "; ".join(f"{s.slot} ({s.summary()})" for s in bad))


def run_health(args: argparse.Namespace, ctx: Context) -> int:
    from preview_slots import health
    from preview_slots.durations import parse_duration

    config = ctx.config
    slots = [config.slot(s) for s in dict.fromkeys(args.slot)] if args.slot else list(config.slots)
    timeout = (parse_duration(args.timeout, what="--timeout", positive=True) if args.timeout
               else config.health.timeout)
    wait = parse_duration(args.wait, what="--wait") if args.wait else 0.0
    checks = [c for c in health.ALL_CHECKS if c.value not in set(args.skip)]
    manager = make_manager(config) if health.CheckName.SERVICE in checks or \
        health.CheckName.DATABASE in checks else None
    last_reset = _LastResets(config) if health.CheckName.PROVENANCE in checks else None
    try:
        report = health.check_until(
            config, slots, wait=wait, manager=manager, last_reset=last_reset, timeout=timeout,
            checks=checks,
            on_attempt=None if args.json or not wait
            else lambda attempt, seen: _progress(ctx, attempt, seen),
        )
    finally:
        if last_reset is not None:
            last_reset.close()
    if args.json:
        ctx.json(health.as_json(report))
    else:
        ctx.out(health.table(report.slots))
        ctx.out()
        ctx.out(health.summary_line(report))
    return 0 if report.healthy else 1
