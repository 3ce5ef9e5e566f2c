"""``provision [--slot S] [--dry-run]``: env files, services and Caddy routes for the slots."""

from __future__ import annotations

import argparse

from preview_slots.cli.context import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "provision",
        help="install/update slot env files, units (or supervisord programs) and the Caddyfile; "
        "start or restart exactly the services that changed",
        description="Build a plan (files with diffs, daemon-reload, starts and restarts, Caddy "
        "reload) from the configuration and apply it. --dry-run prints the plan, secrets "
        "masked, and changes nothing.",
    )
    p.add_argument("--slot", action="append", metavar="S",
                   help="only this slot (repeatable); the shared unit and Caddyfile are always "
                   "brought up to date")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan and change nothing")
    p.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=run_provision)


def run_provision(args: argparse.Namespace, ctx: Context) -> int:
    from preview_slots.runtime.provision import provision

    result = provision(ctx.config, args.slot, dry_run=args.dry_run)
    for line in result.lines():
        ctx.out(line)
    if result.problem:
        from preview_slots.redact import mask

        ctx.err(f"preview-slots: error: applying this plan would fail: {mask(result.problem)}")
        return 1
    return 0
