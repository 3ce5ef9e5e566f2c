"""Commands around leases: init, allocate, release, renew, status, history, reap, unquarantine."""

from __future__ import annotations

import argparse

from preview_slots.cli.context import Context
from preview_slots.cli.render import table

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing would slow down `--help`
if TYPE_CHECKING:
    from typing import Any


ADOPT_HELP = ("replace the slot's database even when preview-slots did not make it (no "
              "preview-slots comment) and it is not empty")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("init", help="create or upgrade the control-plane schema (idempotent)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("allocate", help="lease a slot to a run, reset and load its database")
    p.add_argument("--run-id", required=True)
    add_source_flags(p, required=True)
    p.add_argument("--wait", default="0", metavar="DURATION",
                   help="wait this long for a slot to free up (e.g. 10m); default: do not wait")
    p.add_argument("--ttl", metavar="DURATION", help="hold the lease this long (default [lease] ttl)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--github-output", action="store_true",
                   help="append slot, url, db_name, reset_id to $GITHUB_OUTPUT")
    p.add_argument("--no-health", action="store_true",
                   help="do not restart the service nor wait for it to be healthy")
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.add_argument("--adopt", action="store_true", help=ADOPT_HELP)
    p.set_defaults(func=cmd_allocate)

    p = sub.add_parser("release", help="end a run's lease (idempotent)")
    p.add_argument("--run-id", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("renew", help="extend a run's ready lease")
    p.add_argument("--run-id", required=True)
    p.add_argument("--ttl", metavar="DURATION")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_renew)

    p = sub.add_parser("status", help="show each slot: holder, age, expiry, last reset")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("history", help="show preview_db_resets rows, newest first")
    p.add_argument("--slot")
    p.add_argument("--run-id")
    p.add_argument("--limit", type=_positive_int, default=20, help="at most N rows (1-10000)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("reap", help="end expired leases; their running resets become abandoned")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_reap)

    p = sub.add_parser("unquarantine", help="put a quarantined slot back into the pool")
    p.add_argument("--slot", required=True)
    p.set_defaults(func=cmd_unquarantine)


def _positive_int(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10000:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 10000, got {text!r}")
    return int(text)


def add_source_flags(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--strategy", choices=("seed", "snapshot"), required=required)
    p.add_argument("--seed-version", metavar="V")
    p.add_argument("--snapshot-version", metavar="V")


def source_request(args: argparse.Namespace) -> Any:
    from preview_slots.service import SourceRequest

    return SourceRequest(args.strategy, args.seed_version, args.snapshot_version)


def duration(value: str | None, what: str, *, positive: bool = False) -> float | None:
    from preview_slots.durations import parse_duration

    return None if value is None else parse_duration(value, what=what, positive=positive)


def cmd_init(args: argparse.Namespace, ctx: Context) -> int:
    from preview_slots.service import init

    result = init(ctx.config)
    applied = ", ".join(result["applied"]) or "none (already up to date)"
    ctx.out(f"control plane {result['control_plane']}: schema version "
            f"{result['schema_version']}; migrations applied: {applied}")
    return 0


def cmd_allocate(args: argparse.Namespace, ctx: Context) -> int:
    from preview_slots import service
    from preview_slots.cli.hooks import prewarm_in_background, readiness_hooks

    gh_output = github_output_path() if args.github_output else None
    wait = duration(args.wait, "--wait") or 0.0
    ttl = duration(args.ttl, "--ttl", positive=True)
    config = ctx.config
    stop, after = (None, None) if args.no_health or args.dry_run else readiness_hooks(config)
    result = service.allocate(
        config, args.run_id, source_request(args), wait=wait, ttl=ttl, dry_run=args.dry_run,
        stop_service=stop, after_reset=after, on_wait=lambda msg: ctx.err(f"preview-slots: {msg}"),
        adopt=args.adopt,
    )
    if not args.dry_run and not result.reused:
        prewarm_in_background(config, result.slot_id, result.strategy, result.seed_version,
                              result.snapshot_version)
    if gh_output and not args.dry_run:
        from preview_slots.ci import write_github_output

        write_github_output(gh_output, {"slot": result.slot_id, "url": result.url,
                                        "db_name": result.db_name, "reset_id": result.reset_id})
    if args.json:
        ctx.json(result.to_json())
        return 0
    if result.dry_run:
        ctx.out(f"dry run: would allocate slot {result.slot_id} ({result.db_name}) to run "
                f"{result.run_id}:")
        for step in result.plan:
            ctx.out(f"  - {step}")
        ctx.out("nothing was changed")
        return 0
    source = result.seed_version or result.snapshot_version
    verb = "already held by" if result.reused else "leased to"
    ctx.out(f"slot {result.slot_id} {verb} run {result.run_id} (generation {result.generation})")
    ctx.out(f"  url:       {result.url}")
    if config.caddy.enabled:
        slot = config.slot(result.slot_id)
        scheme, port = (("http", config.caddy.http_port) if config.caddy.tls == "off"
                        else ("https", config.caddy.https_port))
        resolve = "" if scheme == "http" else f"--resolve {slot.host}:{port}:127.0.0.1 "
        target = (f"http://{config.caddy.proxy_address}:{port}/" if scheme == "http"
                  else f"https://{slot.host}:{port}/")
        ctx.out(f"  try:       curl {resolve}-H 'Host: {slot.host}' {target}")
    ctx.out(f"  database:  {result.db_name}")
    ctx.out(f"  reset:     #{result.reset_id} {result.reset_status} ({result.strategy} {source}"
            f"{', sha256 ' + result.checksum[:12] if result.checksum else ''})")
    ctx.out(f"  expires:   {result.lease_expires_at}")
    return 0


def github_output_path() -> str:
    """Checked before anything is allocated, so a misconfigured job fails without holding a slot."""
    import os

    from preview_slots.errors import UsageError

    target = os.environ.get("GITHUB_OUTPUT")
    if not target:
        raise UsageError("--github-output: $GITHUB_OUTPUT is not set (run inside GitHub Actions)")
    return target


def cmd_release(args: argparse.Namespace, ctx: Context) -> int:
    from preview_slots.cli.hooks import prewarm_in_background
    from preview_slots.service import release

    rows = release(ctx.config, args.run_id)
    for row in rows:
        prewarm_in_background(ctx.config, row["slot_id"], row["strategy"], row["seed_version"],
                              row["snapshot_version"])
    if args.json:
        ctx.json({"run_id": args.run_id, "released": [r["slot_id"] for r in rows]})
    elif rows:
        for row in rows:
            ctx.out(f"released slot {row['slot_id']} (run {args.run_id})")
    else:
        ctx.out(f"run {args.run_id} holds no lease (already released or expired): nothing to do")
    return 0


def cmd_renew(args: argparse.Namespace, ctx: Context) -> int:
    from preview_slots.service import renew

    lease = renew(ctx.config, args.run_id, duration(args.ttl, "--ttl", positive=True))
    if args.json:
        ctx.json({"run_id": lease.run_id, "slot_id": lease.slot_id,
                  "lease_expires_at": lease.expires_at.isoformat()})
    else:
        ctx.out(f"renewed slot {lease.slot_id} for run {lease.run_id} until "
                f"{lease.expires_at.isoformat()}")
    return 0


def _ago(value: Any) -> str:
    from preview_slots.durations import format_duration

    return "" if value is None else format_duration(value.total_seconds())


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    from preview_slots.service import status

    rows = status(ctx.config)
    if args.json:
        ctx.json([_status_json(r) for r in rows])
        return 0
    body = []
    for r in rows:
        state = "quarantined" if r["status"] == "quarantined" else (r["state"] or "free")
        last = (f"#{r['reset_id']} {r['reset_status']} {r['strategy']} "
                f"{r['seed_version'] or r['snapshot_version'] or ''}".strip()
                if r["reset_id"] else "-")
        body.append([r["slot_id"], r["db_name"], state, r["run_id"] or "-", _ago(r["age"]) or "-",
                     _expires(r["remaining"]) if r["run_id"] else "-",
                     r["heartbeat_at"].strftime("%H:%M:%S") if r["heartbeat_at"] else "-",
                     str(r["generation"]), last])
    ctx.out(table(["SLOT", "DATABASE", "STATE", "RUN", "AGE", "EXPIRES IN", "HEARTBEAT", "GEN",
                   "LAST RESET"], body))
    return 0


def _expires(remaining: Any) -> str:
    if remaining is None or remaining.total_seconds() <= 0:
        return "expired"  # ended by the next allocate or `reap`
    return _ago(remaining)


def _status_json(r: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in r.items() if k not in ("age", "remaining")}
    out["age_seconds"] = r["age"].total_seconds() if r["age"] is not None else None
    out["expires_in_seconds"] = r["remaining"].total_seconds() if r["remaining"] else None
    out["state"] = "quarantined" if r["status"] == "quarantined" else (r["state"] or "free")
    return out


def cmd_history(args: argparse.Namespace, ctx: Context) -> int:
    from preview_slots.service import history

    rows = history(ctx.config, slot_id=args.slot, run_id=args.run_id, limit=args.limit)
    if args.json:
        ctx.json(rows)
        return 0
    body = [[str(r["id"]), r["run_id"], r["slot_id"], r["db_name"], r["strategy"],
             r["seed_version"] or "-", r["snapshot_version"] or "-", r["reset_status"],
             r["started_at"].strftime("%Y-%m-%d %H:%M:%S"),
             _ago(r["finished_at"] - r["started_at"]) if r["finished_at"] else "-",
             (r["details"].get("error") or "")[:60]] for r in rows]
    ctx.out(table(["ID", "RUN", "SLOT", "DATABASE", "STRATEGY", "SEED", "SNAPSHOT", "STATUS",
                   "STARTED", "TOOK", "ERROR"], body))
    return 0


def cmd_reap(args: argparse.Namespace, ctx: Context) -> int:
    from preview_slots.service import reap

    result = reap(ctx.config)
    if args.json:
        ctx.json(result)
    else:
        slots = ", ".join(result["expired_slots"]) or "none"
        ctx.out(f"expired leases ended on: {slots}")
    return 0


def cmd_unquarantine(args: argparse.Namespace, ctx: Context) -> int:
    from preview_slots.service import unquarantine

    if unquarantine(ctx.config, args.slot):
        ctx.out(f"slot {args.slot} is back in the pool")
    else:
        ctx.out(f"slot {args.slot} was not quarantined: nothing to do")
    return 0
