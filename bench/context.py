"""What every part of the benchmark shares: the folder, the server, the CLI, config files."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.common import BenchError, Cli
from bench.server import BenchServer
from preview_slots.config import build_config
from preview_slots.local.pg import free_port


def default_clone_strategy() -> str:
    """The clone strategy preview-slots uses when the config does not say."""
    return build_config({}, None).cache.clone_strategy


def other_strategy(strategy: str) -> str:
    return "wal_log" if strategy == "file_copy" else "file_copy"


@dataclass
class Bench:
    root: Path
    server: BenchServer
    cli: Cli
    reps: int
    default_strategy: str = field(default_factory=default_clone_strategy)
    children: list[subprocess.Popen[str]] = field(default_factory=list)  # killed on interrupt
    stack: Path | None = None  # the runtime's state folder while it runs
    prefixes: set[str] = field(default_factory=set)  # [cache] prefixes of our configs

    def background_work(self) -> list[int]:
        """Pids of preview-slots work detached from our commands (a prewarm, a background drop
        of a replaced database) that is still running."""
        busy = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            text = " ".join(argv)
            ours = str(self.root) in text and "preview_slots" in text
            drop = Path(argv[0]).name == "psql" and "DROP DATABASE" in text and any(
                f'"{prefix}old_' in text for prefix in self.prefixes)
            if ours or drop:
                busy.append(int(proc.name))
        return busy

    def quiesce(self, timeout: float = 600) -> float:
        """Wait until no background work of ours runs, then CHECKPOINT (neither is timed), so
        the next measurement pays for nothing that came before it. Returns the seconds waited."""
        started = time.perf_counter()
        while self.background_work():
            if time.perf_counter() - started > timeout:
                raise BenchError(f"background work still running after {timeout:g}s: pids "
                                 f"{self.background_work()}")
            time.sleep(0.02)
        waited = time.perf_counter() - started
        self.server.checkpoint()
        return waited

    @property
    def seeds(self) -> Path:
        return self.root / "seeds"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def scratch(self) -> Path:
        return self.root / "scratch"

    def write_config(self, name: str, *, slots: list[tuple[str, str]], prefix: str,
                     control_plane: str, seeds_dir: Path | None = None, cache: str = "",
                     runtime: str = '[runtime]\nmanager = "none"\n\n[caddy]\ntls = "off"\n',
                     lease: str = "", background: bool = True) -> Path:
        """A config on the bench server. ``slots`` are (id, database) pairs. ``background``:
        ``[cache] background_prewarm`` (the default, true: work after a reset is detached)."""
        pg = self.server.pg
        self.prefixes.add(prefix)
        text = (
            f'[database]\nurl = "{pg.url("postgres")}"\nbin_dir = "{pg.bin_dir}"\n\n'
            f'[control_plane]\nurl = "{pg.url(control_plane)}"\n\n'
            f'[seeds]\ndir = "{seeds_dir or self.seeds}"\n\n'
            f'[snapshots]\ndir = "{self.snapshots}"\n\n'
            f'[cache]\nprefix = "{prefix}"\nchecksums_file = "{self.root}/checksums.json"\n'
            f'background_prewarm = {"true" if background else "false"}\n{cache}\n\n'
            f'[lease]\nreset_ttl = "10m"\n{lease}\n\n{runtime}\n'
        )
        for slot_id, database in slots:
            text += (f'[[slots]]\nid = "{slot_id}"\nhost = "{slot_id}.example.com"\n'
                     f"port = {free_port()}\n"
                     f'database = "{database}"\nstatic_root = "{self.root}/static/{slot_id}"\n\n')
        path = self.root / "configs" / f"{name}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def reset_details(self, control_plane: str, reset_id: int) -> dict[str, Any]:
        with psycopg.connect(self.server.url(control_plane), autocommit=True) as conn:
            row = conn.execute("SELECT details FROM preview_db_resets WHERE id = %s",
                               (reset_id,)).fetchone()
        if row is None:
            return {}
        details: dict[str, Any] = row[0]
        return details


def phase_sum(phases: dict[str, float]) -> float:
    """The reset's own phases (``stop_service`` is nested inside ``swap``)."""
    return sum(v for k, v in phases.items() if k != "stop_service")
