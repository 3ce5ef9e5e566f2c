"""Entry point and the one error boundary."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module
from typing import NoReturn

from preview_slots import __version__
from preview_slots.cli.context import Context

# Each module registers its commands; keep their top-level imports light.
COMMAND_MODULES = (
    "preview_slots.cli.slots",      # init, allocate, release, renew, status, history, reap
    "preview_slots.cli.db",         # db reset|seed|reset-and-seed, snapshot create, cache
    "preview_slots.cli.local",      # local up|down|status|psql
    "preview_slots.cli.runtime",    # provision
    "preview_slots.cli.health",     # health
)

EXIT_BUG = 70


class Parser(argparse.ArgumentParser):
    """argparse with the tool's one-line errors: ``preview-slots: error: ...`` and exit 2, the
    usage left to ``--help`` (subcommands' parsers are of this class too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"preview-slots: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="preview-slots",
        description="A fixed pool of preview environments (slots): leases, deterministic database "
        "resets with provenance, services and Caddy routes.",
        epilog="Exit codes: 0 ok, 1 failed, 2 bad usage/config, 3 no slot free, 4 refused for "
        "safety, 70 internal error.",
    )
    parser.add_argument("--config", metavar="PATH",
                        help="config file (else $PREVIEW_SLOTS_CONFIG, ./preview-slots.toml, "
                        "/etc/preview-slots/config.toml, built-in defaults)")
    parser.add_argument("--debug", action="store_true", help="log every step; show tracebacks")
    parser.add_argument("--version", action="version", version=f"preview-slots {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context(config_path=args.config, debug=args.debug)
    import logging  # imported only now: `--help` and bad flags have exited above
    import signal
    import traceback

    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="preview-slots: %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.debug:
        from preview_slots.redact import mask

        class _Mask(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                record.msg = mask(record.getMessage())
                record.args = None
                return True

        for handler in logging.getLogger().handlers:
            handler.addFilter(_Mask())
    from preview_slots.errors import Interrupted, PreviewSlotsError

    def interrupted(signum: int, frame: object) -> None:
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}: stopped (a reset in "
                          "progress, if any, is recorded as failed and its slot given back)")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    try:
        code: int = args.func(args, ctx)
        return code
    except PreviewSlotsError as exc:
        from preview_slots.redact import mask

        if args.debug:
            traceback.print_exc()
        ctx.err(f"preview-slots: error: {mask(exc.message)}")
        return exc.exit_code
    except Exception as exc:  # the one boundary for bugs: print everything, distinct code
        from preview_slots.redact import mask

        ctx.err(mask(traceback.format_exc()))
        ctx.err(f"preview-slots: internal error ({type(exc).__name__}); this is a bug, please "
                "report it with the traceback above")
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
