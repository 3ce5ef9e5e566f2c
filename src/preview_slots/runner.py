"""The one way this project starts a program: an argv list, a timeout, a checked exit code.

Never a shell. The argv is logged with secrets masked; on failure the tail of stderr is kept in
the exception so the message can say what the program said.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from preview_slots.errors import CommandFailed
from preview_slots.redact import mask

log = logging.getLogger(__name__)

STDERR_TAIL = 2000


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def _tail(text: str) -> str:
    return mask(text[-STDERR_TAIL:].strip())


def run(
    argv: Sequence[str],
    *,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    input_text: str | None = None,
    check: bool = True,
    what: str = "",
) -> Result:
    """Run ``argv`` and return its output; raise :class:`CommandFailed` on a non-zero exit.

    ``env`` replaces the child's environment entirely when given (callers build it explicitly).
    """
    args = [str(a) for a in argv]
    label = what or Path(args[0]).name
    log.debug("run: %s", mask(" ".join(args)))
    started = time.monotonic()
    try:
        proc = subprocess.run(
            args,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            check=False,
        )
    except FileNotFoundError as exc:
        raise CommandFailed(
            f"{label}: program not found: {args[0]} (install it or set its path in the config)",
            argv=args,
        ) from exc
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise CommandFailed(
            f"{label}: timed out after {timeout:g}s", argv=args, stderr_tail=_tail(err)
        ) from exc
    result = Result(
        tuple(args), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started
    )
    if check and proc.returncode != 0:
        tail = _tail(proc.stderr or proc.stdout)
        last = tail.splitlines()[-1] if tail else "no output"
        raise CommandFailed(
            f"{label} exited with {proc.returncode}: {last}",
            argv=args,
            returncode=proc.returncode,
            stderr_tail=tail,
        )
    return result


def spawn_detached(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> int:
    """Start ``argv`` in its own session, detached from ours (no output, not waited for)."""
    args = [str(a) for a in argv]
    log.debug("spawn: %s", mask(" ".join(args)))
    proc = subprocess.Popen(  # argv list, never a shell
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, env=dict(env) if env is not None else None, cwd="/",
    )
    return proc.pid
