"""``local up | down | status | psql``: the embedded stack for demos and tests."""

from __future__ import annotations

import argparse

from preview_slots.cli.context import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    local = sub.add_parser("local", help="the embedded local stack (PostgreSQL, supervisord, Caddy)")
    lsub = local.add_subparsers(dest="local_command", metavar="COMMAND")
    lsub.required = True
    for name, help_text in (("up", "start it and write <state>/preview-slots.toml"),
                            ("down", "stop it"), ("status", "show what runs")):
        p = lsub.add_parser(name, help=help_text)
        p.add_argument("--state-dir", default=".preview-slots")
        if name == "up":
            p.add_argument("--seeds-dir", default="examples/seeds",
                           help="seed versions for the local config (default examples/seeds)")
        p.set_defaults(func=cmd_local)
    p = lsub.add_parser("psql", help="open psql on a slot's database of the local stack")
    p.add_argument("--state-dir", default=".preview-slots")
    p.add_argument("--slot", default="preview1")
    p.add_argument("psql_args", nargs=argparse.REMAINDER, metavar="-- PSQL ARGS",
                   help="passed to psql, e.g. -- -Atc 'SELECT count(*) FROM customers'")
    p.set_defaults(func=cmd_psql)


def cmd_local(args: argparse.Namespace, ctx: Context) -> int:
    from pathlib import Path  # paths stay strings until here: pathlib would slow down `--help`

    from preview_slots.local.stack import LocalStack

    stack = LocalStack(Path(args.state_dir))
    if args.local_command == "up":
        lines = stack.up(Path(args.seeds_dir))
    elif args.local_command == "down":
        lines = stack.down()
    else:
        lines = stack.status()
    for line in lines:
        ctx.out(line)
    return 0


def cmd_psql(args: argparse.Namespace, ctx: Context) -> int:
    import os
    from pathlib import Path

    from preview_slots.config import load_config
    from preview_slots.local.stack import LocalStack
    from preview_slots.sources import libpq_env, tool

    config = load_config(LocalStack(Path(args.state_dir)).config_path)
    slot = config.slot(args.slot)
    env = libpq_env(config.database.url.with_dbname(slot.database), "psql")
    extra = args.psql_args[1:] if args.psql_args[:1] == ["--"] else args.psql_args
    os.execve(tool(config, "psql"), [tool(config, "psql"), "-X", *extra], {**os.environ, **env})
    return 0
