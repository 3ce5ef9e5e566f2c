"""The command line: parse flags, load the config, call one library function, render, map errors.

Each command group lives in its own module exposing ``register(subparsers)``; a handler has the
signature ``handler(args, ctx) -> int``. Modules import only light things at top level (the
library is imported inside handlers) so that ``preview-slots --help`` stays fast.
"""

from preview_slots.cli.main import main

__all__ = ["main"]
