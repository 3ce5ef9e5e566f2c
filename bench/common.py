"""Small shared pieces of the benchmark: timing, statistics, running programs, the CLI."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class BenchError(Exception):
    """A step of the benchmark could not run; the message says which and why."""


@dataclass
class Series:
    """Repeated measurements of one thing, in seconds."""

    name: str
    includes: str = ""
    values: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def spread(self) -> str:
        if len(self.values) < 2:
            return ""
        return f"{min(self.values):.3f}-{max(self.values):.3f}"


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (q in 0..1) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(q * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def log(text: str) -> None:
    """Progress lines go to stderr so that stdout holds only the report."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 3600,
        what: str = "") -> subprocess.CompletedProcess[str]:
    """Run a program (an argv list, never a shell); raise BenchError on a non-zero exit."""
    proc = subprocess.run([str(a) for a in argv], env=dict(env) if env is not None else None,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise BenchError(f"{what or Path(argv[0]).name} exited with {proc.returncode}: "
                         + " | ".join(tail))
    return proc


def child_cpu() -> float:
    """User + system CPU seconds used so far by our waited-for children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Cli:
    """The installed ``preview-slots`` command, run as CI runs it: a fresh process each time.

    CLI processes get a bytecode cache in the bench folder (``PYTHONPYCACHEPREFIX``), as an
    installed tool has one, even when the caller's environment disables writing bytecode."""

    def __init__(self, pycache: Path) -> None:
        script = Path(sys.executable).parent / "preview-slots"
        self.argv0 = [str(script)] if script.exists() else [sys.executable, "-m", "preview_slots"]
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PREVIEW_SLOTS_") and k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
        self.env = env

    def argv(self, config: Path | None, *args: str) -> list[str]:
        return [*self.argv0, *(["--config", str(config)] if config else []), *args]

    def run(self, config: Path | None, *args: str, timeout: float = 3600,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(config, *args), env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if proc.returncode == 2 and "run `preview-slots init`" in proc.stderr and config:
            # preview-slots was upgraded while we ran (an editable install): migrate, retry
            self.run(config, "init")
            proc = subprocess.run(self.argv(config, *args), env=self.env, capture_output=True,
                                  text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-2:]
            raise BenchError(f"preview-slots {' '.join(args[:2])} exited with "
                             f"{proc.returncode}: {' | '.join(tail)}")
        return proc

    def timed_json(self, config: Path, *args: str) -> tuple[float, dict[str, Any]]:
        """Wall time from process start to exit, and the JSON it printed."""
        started = time.perf_counter()
        proc = self.run(config, *args)
        elapsed = time.perf_counter() - started
        data: dict[str, Any] = json.loads(proc.stdout)
        return elapsed, data
