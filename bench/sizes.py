"""Per database size: every way to get a fresh copy of the same data, measured side by side.

The repetitions are interleaved (one of each method, then again) so that load from elsewhere on
the machine spreads over all methods instead of hitting one. Before every timed operation the
server takes a CHECKPOINT (not timed), so that no operation pays for the writes of the one before.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import BenchError, Series, log, run, timed
from bench.context import Bench, other_strategy, phase_sum

SLOT, SLOT_DB, RUN, CP = "b1", "bench_slot_1", "bench-b1", "bench_cp"
CLONE = "bench_copy"
BYTES_PER_SCALE = 15.0 * 1024 * 1024  # pgbench: about 15 MiB per scale unit, plus ~7 MiB base
BASE_BYTES = 7.0 * 1024 * 1024


def scale_for(mib: int) -> int:
    return max(1, round((mib * 1024 * 1024 - BASE_BYTES) / BYTES_PER_SCALE))


@dataclass
class SizeResult:
    mib: int
    scale: int
    default_strategy: str
    db_bytes: int = 0
    seed_bytes: int = 0
    dump_bytes: int = 0
    rows: dict[str, Series] = field(default_factory=dict)
    info: list[str] = field(default_factory=list)

    def series(self, key: str, name: str, includes: str = "") -> Series:
        if key not in self.rows:
            self.rows[key] = Series(name, includes)
        return self.rows[key]

    def median(self, key: str) -> float:
        return self.rows[key].median if key in self.rows else float("nan")


class SizeRun:
    def __init__(self, bench: Bench, mib: int) -> None:
        self.b = bench
        self.s = bench.server
        self.mib = mib
        self.result = SizeResult(mib, scale_for(mib), bench.default_strategy)
        self.src = f"bench_src_{mib}"
        self.version = f"s{mib}"
        self.seed_file = bench.seeds / self.version / "001_dump.sql"
        self.dump_file = bench.snapshots / f"{self.version}.dump"
        strategy = bench.default_strategy
        slots = [(SLOT, SLOT_DB)]
        self.cfg_tpl = bench.write_config("template", slots=slots, prefix="pb_", control_plane=CP,
                                          cache="spares = false")
        self.cfg_other = bench.write_config(
            "template-other", slots=slots, prefix="pb_", control_plane=CP,
            cache=f'spares = false\nclone_strategy = "{other_strategy(strategy)}"')
        self.cfg_spare = bench.write_config("spare", slots=slots, prefix="pb_", control_plane=CP,
                                            cache="spares = true")

    # -- setup ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        r = self.result
        log(f"{self.mib} MiB: building the source database (pgbench scale {r.scale})")
        self.s.drop(self.src)
        self.s.load_fast(True)
        try:
            self.s.create(self.src)
            self.s.pgbench_init(self.src, r.scale)
        finally:
            self.s.load_fast(False)
        r.db_bytes = self.s.size(self.src)
        log(f"{self.mib} MiB: source is {r.db_bytes / 2**20:.1f} MiB; dumping seed and snapshot")
        self.seed_file.parent.mkdir(parents=True, exist_ok=True)
        self.dump_file.parent.mkdir(parents=True, exist_ok=True)
        self.s.pg_dump(self.src, self.seed_file, "plain")
        self.s.pg_dump(self.src, self.dump_file, "custom")
        r.seed_bytes = self.seed_file.stat().st_size
        r.dump_bytes = self.dump_file.stat().st_size
        self.b.cli.run(self.cfg_tpl, "init")
        for kind in ("seed", "snapshot"):
            log(f"{self.mib} MiB: first reset from the {kind} builds its template (not a rep)")
            self.b.quiesce()
            elapsed, data = self._reset(self.cfg_tpl, kind)
            r.info.append(f"first preview-slots reset from the {kind} (builds the template): "
                          f"{elapsed:.2f} s, of which template build "
                          f"{data['phases'].get('template', float('nan')):.2f} s")

    def cleanup(self) -> None:
        self.b.cli.run(self.cfg_tpl, "cache", "prune", "--all", check=False)
        for db in (SLOT_DB, CLONE, self.src):
            self.s.drop(db)
        self.s.drop_prefixed("pb_")
        shutil.rmtree(self.seed_file.parent, ignore_errors=True)
        self.dump_file.unlink(missing_ok=True)

    # -- one repetition of each method -------------------------------------------------------

    def rep(self, n: int) -> None:
        steps: list[tuple[str, Callable[[], None]]] = [
            ("floor", self.floor),
            ("clone wal_log", lambda: self.clone("wal_log")),
            ("clone file_copy", lambda: self.clone("file_copy")),
            ("seed replay", self.seed_replay),
            ("pg_restore -j1", lambda: self.restore(1)),
            ("pg_restore -j2", lambda: self.restore(2)),
            ("reset via template (seed)", lambda: self.ps_template("seed")),
            ("reset via template (snapshot)", lambda: self.ps_template("snapshot")),
            ("reset via template, other strategy", self.ps_template_other),
            ("reset via warm spare (seed)", lambda: self.ps_spare("seed")),
            ("reset via warm spare (snapshot)", lambda: self.ps_spare("snapshot")),
            ("source checks", self.source_checks),
        ]
        for name, step in steps:
            log(f"{self.mib} MiB rep {n + 1}/{self.b.reps}: {name}")
            step()

    def floor(self) -> None:
        self.b.quiesce()
        self.result.series("floor", "floor: cp -r + sync of its files").values.append(
            self.s.copy_floor(self.src, self.b.scratch))

    def clone(self, strategy: str) -> None:
        r = self.result
        self.s.drop(CLONE)
        self.b.quiesce()
        r.series(f"clone_{strategy}", f"CREATE DATABASE TEMPLATE, {strategy.upper()}").values \
            .append(timed(lambda: self.s.create(CLONE, template=self.src, strategy=strategy)))
        r.series(f"ckpt_{strategy}", f"  then CHECKPOINT (deferred writes of {strategy})") \
            .values.append(self.b.quiesce())
        r.series(f"drop_{strategy}", f"  then DROP DATABASE of the copy ({strategy})") \
            .values.append(timed(lambda: self.s.drop(CLONE)))

    def seed_replay(self) -> None:
        self.s.drop(CLONE)
        self.b.quiesce()

        def load() -> None:
            self.s.create(CLONE)
            self.s.psql_file(CLONE, self.seed_file)

        self.result.series("seed", "seed replay: psql, one transaction").values.append(timed(load))
        self.s.drop(CLONE)

    def restore(self, jobs: int) -> None:
        self.s.drop(CLONE)
        self.b.quiesce()

        def load() -> None:
            self.s.create(CLONE)
            self.s.pg_restore(CLONE, self.dump_file, jobs)

        self.result.series(f"restore_j{jobs}", f"pg_restore -j{jobs}").values.append(timed(load))
        self.s.drop(CLONE)

    # -- preview-slots -------------------------------------------------------------------------

    def _reset(self, config: Path, kind: str) -> tuple[float, dict[str, Any]]:
        flag = "--seed-version" if kind == "seed" else "--snapshot-version"
        elapsed, data = self.b.cli.timed_json(
            config, "db", "reset-and-seed", "--slot", SLOT, "--run-id", RUN, "--strategy", kind,
            flag, self.version, "--json")
        if data.get("reset_status") != "succeeded":
            raise BenchError(f"reset did not succeed: {data}")
        details = self.b.reset_details(CP, int(data["reset_id"]))
        data["clone"] = details.get("clone")
        data["phases"] = details.get("phases", data.get("phases", {}))
        return elapsed, data

    def _record(self, key: str, name: str, elapsed: float, data: dict[str, Any],
                expect: str) -> None:
        if data.get("clone") != expect:
            raise BenchError(f"{name}: expected clone={expect}, the reset used {data.get('clone')}")
        phases: dict[str, float] = data["phases"]
        r = self.result
        r.series(key, name).values.append(elapsed)
        r.series(f"{key}_phases", "  its reset phases (details.phases)").values.append(
            phase_sum(phases))
        step = "clone" if expect == "template" else "spare"
        r.series(f"{key}_{step}", f"  of which the {step} step").values.append(
            float(phases.get(step, 0.0)))
        r.series(f"{key}_after", "  background drop of the old copy, after exit").values.append(
            self.b.quiesce())

    def ps_template(self, kind: str) -> None:
        self.b.quiesce()
        elapsed, data = self._reset(self.cfg_tpl, kind)
        self._record(f"tpl_{kind}", f"preview-slots reset, template clone ({kind}; "
                     f"{self.b.default_strategy})", elapsed, data, "template")

    def ps_template_other(self) -> None:
        self.b.quiesce()
        elapsed, data = self._reset(self.cfg_other, "seed")
        self._record("tpl_other", f"preview-slots reset, template clone (seed; "
                     f"{other_strategy(self.b.default_strategy)})", elapsed, data, "template")

    def ps_spare(self, kind: str) -> None:
        flag = "--seed-version" if kind == "seed" else "--snapshot-version"
        self.b.cli.run(self.cfg_spare, "prewarm", "--slot", SLOT, flag, self.version, "--json")
        self.b.quiesce()
        elapsed, data = self._reset(self.cfg_spare, kind)
        self._record(f"spare_{kind}", f"preview-slots reset, warm spare ({kind})", elapsed, data,
                     "spare")

    def source_checks(self) -> None:
        """What every command naming the version does before it touches a database, timed in
        our process. The first time: a seed's files are read, hashed and scanned for psql
        meta-commands; an archive is listed (pg_restore --list) and hashed. Later: the checksum
        remembered for the files' identity ([cache] checksums_file) is used."""
        from dataclasses import replace

        from preview_slots.config import load_config
        from preview_slots.sources import resolve_seed, resolve_snapshot

        config = load_config(self.cfg_tpl)
        first = replace(config, cache=replace(config.cache, checksums_file=None))
        r = self.result
        r.series("check_seed", "  checking the seed alone, first time (in process)").values \
            .append(timed(lambda: resolve_seed(first, self.version)))
        r.series("check_seed_memo", "  checking the seed alone, remembered").values \
            .append(timed(lambda: resolve_seed(config, self.version)))
        r.series("check_snapshot", "  checking the snapshot alone, first time").values \
            .append(timed(lambda: resolve_snapshot(first, self.version)))
        r.series("check_snapshot_memo", "  checking the snapshot alone, remembered").values \
            .append(timed(lambda: resolve_snapshot(config, self.version)))

    def verify(self) -> None:
        """The slot holds the source's data after the last reset (a cheap sanity check)."""
        out = run([self.s.tool("psql"), "-X", "-At", "-c",
                   "SELECT count(*) FROM pgbench_accounts"], env=self.s.env(SLOT_DB)).stdout
        if int(out.strip()) != self.result.scale * 100_000:
            raise BenchError(f"{SLOT_DB} has {out.strip()} accounts after the reset, expected "
                             f"{self.result.scale * 100_000}")


def measure_size(bench: Bench, mib: int) -> SizeResult:
    size = SizeRun(bench, mib)
    try:
        size.prepare()
        for n in range(bench.reps):
            size.rep(n)
        size.verify()
    finally:
        log(f"{mib} MiB: cleaning up its databases and files")
        size.cleanup()
    return size.result
