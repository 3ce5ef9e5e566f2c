"""Standalone database commands: db reset | seed | reset-and-seed, snapshot create."""

from __future__ import annotations

import argparse

from preview_slots.cli.context import Context
from preview_slots.cli.slots import ADOPT_HELP, add_source_flags, source_request

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing would slow down `--help`
if TYPE_CHECKING:
    from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="reset or seed one slot's database")
    dbsub = db.add_subparsers(dest="db_command", metavar="COMMAND")
    dbsub.required = True

    p = dbsub.add_parser("reset", help="drop and recreate the slot's database, empty")
    p.add_argument("--slot", required=True)
    p.add_argument("--run-id", help="act for this run when it holds the slot")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--adopt", action="store_true", help=ADOPT_HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_db, mode="rebuild", needs_source=False)

    p = dbsub.add_parser("seed", help="apply a seed version to the slot's current database")
    p.add_argument("--slot", required=True)
    p.add_argument("--seed-version", required=True, metavar="V")
    p.add_argument("--run-id", help="act for this run when it holds the slot")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_db, mode="apply", needs_source=True, strategy="seed",
                   snapshot_version=None, adopt=False)

    p = dbsub.add_parser("reset-and-seed",
                         help="rebuild the slot's database from a seed or a snapshot")
    p.add_argument("--slot", required=True)
    p.add_argument("--run-id", required=True)
    add_source_flags(p, required=True)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--adopt", action="store_true", help=ADOPT_HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_db, mode="rebuild", needs_source=True)

    snap = sub.add_parser("snapshot", help="snapshots of slot databases")
    snapsub = snap.add_subparsers(dest="snapshot_command", metavar="COMMAND")
    snapsub.required = True
    p = snapsub.add_parser("create", help="pg_dump -Fc a slot's database to <snapshots.dir>/V.dump")
    p.add_argument("--slot", required=True)
    p.add_argument("--version", required=True, dest="snapshot_version", metavar="V")
    p.add_argument("--force", action="store_true", help="replace an existing version")
    p.set_defaults(func=cmd_snapshot_create)


    p = sub.add_parser("prewarm", help="prepare warm spares (a slot's next database) ahead of time")
    p.add_argument("--slot", help="only this slot (default: every slot)")
    version = p.add_mutually_exclusive_group(required=True)
    version.add_argument("--seed-version", metavar="V")
    version.add_argument("--snapshot-version", metavar="V")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_prewarm)

    cache = sub.add_parser("cache", help="template databases and warm spares")
    csub = cache.add_subparsers(dest="cache_command", metavar="COMMAND")
    csub.required = True
    p = csub.add_parser("list", help="templates and spares with their sizes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cache_list)
    p = csub.add_parser("prune", help="drop templates whose seed or snapshot changed, and their "
                        "spares")
    p.add_argument("--all", action="store_true", help="drop every template and spare")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_cache_prune)


def cmd_prewarm(args: argparse.Namespace, ctx: Context) -> int:
    from preview_slots.service import prewarm

    strategy = "snapshot" if args.snapshot_version else "seed"
    args.strategy = strategy
    results = prewarm(ctx.config, source_request(args), args.slot)
    if args.json:
        ctx.json(results)
        return 0
    for r in results:
        verb = "built" if r["built"] else "already warm"
        ctx.out(f"slot {r['slot_id']}: spare {r['spare']} {verb} (template {r['template']}, "
                f"built {r['built_at']})")
    return 0


def cmd_cache_list(args: argparse.Namespace, ctx: Context) -> int:
    from preview_slots.cache import listing
    from preview_slots.cli.render import table

    rows = listing(ctx.config)
    if args.json:
        ctx.json(rows)
        return 0
    ctx.out(table(["NAME", "KIND", "SIZE", "COMMENT"],
                  [[str(r["name"]), str(r["kind"]), _size(int(str(r["size_bytes"]))),
                    str(r["comment"] or "")] for r in rows]))
    return 0


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def cmd_cache_prune(args: argparse.Namespace, ctx: Context) -> int:
    from preview_slots.service import prune_cache

    dropped = prune_cache(ctx.config, everything=args.all, dry_run=args.dry_run)
    verb = "would drop" if args.dry_run else "dropped"
    ctx.out(f"{verb}: {', '.join(dropped) if dropped else 'nothing'}")
    return 0


def cmd_db(args: argparse.Namespace, ctx: Context) -> int:
    from preview_slots.cli.hooks import readiness_hooks
    from preview_slots.service import db_command

    config = ctx.config
    # the service is stopped for the swap and started again on the new database
    stop, after = (None, None) if args.dry_run else readiness_hooks(config)
    result: dict[str, Any] = db_command(
        config, args.slot, source_request=source_request(args) if args.needs_source else None,
        run_id=args.run_id, mode=args.mode, dry_run=args.dry_run, stop_service=stop,
        after_reset=after, adopt=args.adopt,
    )
    if args.json:
        ctx.json(result)
        return 0
    if result.get("dry_run"):
        ctx.out(f"dry run on slot {result['slot_id']} ({result['db_name']}):")
        for step in result["plan"]:
            ctx.out(f"  - {step}")
        ctx.out("nothing was changed")
        return 0
    version = result["seed_version"] or result["snapshot_version"] or ""
    what = f"{result['strategy']} {version}".strip()
    ctx.out(f"{result['db_name']} (slot {result['slot_id']}): reset #{result['reset_id']} "
            f"{result['reset_status']} ({what})")
    return 0


def cmd_snapshot_create(args: argparse.Namespace, ctx: Context) -> int:
    from preview_slots.sources import create_snapshot

    config = ctx.config
    slot = config.slot(args.slot)
    path = create_snapshot(config, slot.database, args.snapshot_version, force=args.force)
    ctx.out(f"wrote {path} from {slot.database}")
    return 0
