"""Whole-command figures: allocate end to end, many concurrent allocators, start-up time, and the
service runtime (provision, health) when it is present and works here."""

from __future__ import annotations

import importlib.util
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench.common import ROOT, BenchError, Series, child_cpu, log
from bench.context import Bench

EXAMPLE_SEEDS = ROOT / "examples" / "seeds"
SEED = "v1"


@dataclass
class SystemResult:
    rows: dict[str, Series] = field(default_factory=dict)
    info: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    heavy_imports: list[str] = field(default_factory=list)

    def series(self, key: str, name: str) -> Series:
        if key not in self.rows:
            self.rows[key] = Series(name)
        return self.rows[key]

    def median(self, key: str) -> float:
        return self.rows[key].median if key in self.rows else float("nan")


def _allocate_args(run_id: str, wait: str = "0") -> list[str]:
    return ["allocate", "--run-id", run_id, "--strategy", "seed", "--seed-version", SEED,
            "--wait", wait, "--json"]


# -- allocate end to end ---------------------------------------------------------------------------


def measure_allocate(bench: Bench, out: SystemResult) -> None:
    slots = [(f"a{n}", f"bench_alloc_{n}") for n in (1, 2, 3)]
    spare = bench.write_config("alloc", slots=slots, prefix="pa_", control_plane="bench_cp_alloc",
                               seeds_dir=EXAMPLE_SEEDS, cache="spares = true")
    plain = bench.write_config("alloc-nospare", slots=slots, prefix="pa_",
                               control_plane="bench_cp_alloc", seeds_dir=EXAMPLE_SEEDS,
                               cache="spares = false")
    cli = bench.cli
    cli.run(spare, "init")
    elapsed, data = cli.timed_json(spare, *_allocate_args("alloc-first"))
    cli.run(spare, "release", "--run-id", "alloc-first")
    out.info.append(f"first allocate with {SEED} (builds its template): {elapsed:.3f} s")
    reps = max(bench.reps, 5)
    for n in range(reps):
        log(f"allocate end to end: rep {n + 1}/{reps}")
        bench.quiesce()  # the background prewarm after the last release, if any
        cli.run(spare, "prewarm", "--seed-version", SEED, "--json")
        bench.quiesce()
        elapsed, data = cli.timed_json(spare, *_allocate_args(f"alloc-s{n}"))
        _expect_succeeded(data)
        out.series("alloc_spare", f"allocate --json, example seed {SEED}, warm spare").values \
            .append(elapsed)
        cli.run(spare, "release", "--run-id", f"alloc-s{n}")
        bench.quiesce()
        elapsed, data = cli.timed_json(plain, *_allocate_args(f"alloc-t{n}"))
        _expect_succeeded(data)
        out.series("alloc_template", f"allocate --json, example seed {SEED}, template clone") \
            .values.append(elapsed)
        cli.run(plain, "release", "--run-id", f"alloc-t{n}")


def _expect_succeeded(data: dict[str, Any]) -> None:
    if data.get("reset_status") != "succeeded":
        raise BenchError(f"allocate did not succeed: {data}")


# -- concurrent allocators ---------------------------------------------------------------------------


def measure_concurrency(bench: Bench, out: SystemResult, allocators: int, hold: float) -> None:
    slots = [(f"c{n}", f"bench_conc_{n}") for n in (1, 2, 3)]
    config = bench.write_config("concurrency", slots=slots, prefix="pc_",
                                control_plane="bench_cp_conc", seeds_dir=EXAMPLE_SEEDS,
                                cache="spares = true", lease='poll_interval = "2s"',
                                background=False)
    cli = bench.cli
    cli.run(config, "init")
    cli.run(config, "allocate", *_allocate_args("conc-warmup")[1:])  # builds the template
    cli.run(config, "release", "--run-id", "conc-warmup")
    from preview_slots import service
    from preview_slots.config import load_config

    loaded = load_config(config)
    started: dict[str, float] = {}
    finished: dict[str, float] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def allocator(n: int) -> None:
        run_id = f"conc-{n}"
        t0 = time.time()
        proc = subprocess.Popen(cli.argv(config, *_allocate_args(run_id, "20m")), env=cli.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        bench.children.append(proc)
        stdout, stderr = proc.communicate()
        t1 = time.time()
        with lock:
            started[run_id] = t0
        ok = proc.returncode == 0 and '"reset_status": "succeeded"' in stdout
        if not ok:
            with lock:
                failures.append(f"{run_id}: exit {proc.returncode}: {stderr.strip()[-200:]}")
            return
        with lock:
            finished[run_id] = t1
        time.sleep(hold)
        service.release(loaded, run_id)  # in our process: the allocators are the subject

    log(f"{allocators} concurrent allocators on 3 slots, hold {hold:g} s each")
    threads = [threading.Thread(target=allocator, args=(n,)) for n in range(allocators)]
    t_start = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    makespan = time.time() - t_start
    with psycopg.connect(bench.server.url("bench_cp_conc"), autocommit=True) as conn:
        events = conn.execute(
            "SELECT run_id, slot_id, event, extract(epoch FROM at)::float8 FROM lease_events "
            "WHERE run_id LIKE 'conc-%%' AND run_id <> 'conc-warmup' ORDER BY at").fetchall()
        overlaps = conn.execute(
            "SELECT count(*) FROM leases a JOIN leases b ON a.slot_id = b.slot_id "
            "AND a.lease_id < b.lease_id AND b.granted_at < coalesce(a.ended_at, 'infinity') "
            "AND a.granted_at < coalesce(b.ended_at, 'infinity')").fetchone()
    granted = {r[0]: r[3] for r in reversed(events) if r[2] == "granted"}
    waits = [granted[k] - started[k] for k in granted if k in started]
    walls = [finished[k] - started[k] for k in finished]
    handoffs = _handoffs(events)
    if failures:
        out.info.append(f"concurrency: {len(failures)} allocators failed, e.g. {failures[0]}")
    out.series("conc_wait", "claim wait: process start -> lease granted").values.extend(waits)
    out.series("conc_wall", "allocate wall: process start -> JSON").values.extend(walls)
    out.series("conc_handoff", "handoff: release -> next grant on that slot").values.extend(
        handoffs)
    out.info.append(
        f"concurrency: {len(granted)}/{allocators} granted, {len(failures)} failed, makespan "
        f"{makespan:.1f} s ({len(granted) / makespan:.1f} allocations/s), overlapping leases on a "
        f"slot: {overlaps[0] if overlaps else '?'}")


def _handoffs(events: list[tuple[Any, ...]]) -> list[float]:
    by_slot: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for _run, slot, event, at in events:
        by_slot[slot].append((event, at))
    gaps: list[float] = []
    for seq in by_slot.values():
        last_release: float | None = None
        for event, at in seq:
            if event == "released":
                last_release = at
            elif event == "granted" and last_release is not None:
                gaps.append(at - last_release)
                last_release = None
    return gaps


# -- start-up time -------------------------------------------------------------------------------------


def measure_help(bench: Bench, out: SystemResult) -> None:
    cli = bench.cli
    baseline = [sys.executable, "-c", "pass"]
    psycopg_argv = [sys.executable, "-c", "import psycopg"]
    help_argv = cli.argv(None, "--help")
    for argv in (baseline, psycopg_argv, help_argv):  # warm the bytecode cache
        subprocess.run(argv, env=cli.env, stdout=subprocess.DEVNULL, check=True)
    reps = max(bench.reps * 5, 15)
    for _ in range(reps):
        for key, name, argv in (("py_start", "python -c pass (interpreter start-up)", baseline),
                                ("help", "preview-slots --help", help_argv),
                                ("py_psycopg", "python -c 'import psycopg' (the driver alone)",
                                 psycopg_argv)):
            cpu0 = child_cpu()
            t0 = time.perf_counter()
            subprocess.run(argv, env=cli.env, stdout=subprocess.DEVNULL, check=True)
            out.series(key, name).values.append(time.perf_counter() - t0)
            if key != "py_psycopg":
                out.series(f"{key}_cpu", f"  CPU time of {name.split(' (')[0]}").values.append(
                    child_cpu() - cpu0)


def heavy_imports(bench: Bench, runs: int = 5) -> list[str]:
    """The imports of ``preview-slots --help`` with the most self time (median of ``runs``)."""
    samples: dict[str, list[int]] = defaultdict(list)
    pattern = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "preview_slots", "--help"],
                              env=bench.cli.env, capture_output=True, text=True, check=True)
        for line in proc.stderr.splitlines():
            match = pattern.match(line)
            if match:
                samples[match[4]].append(int(match[1]))
    ranked = sorted(((statistics.median(v), k) for k, v in samples.items()), reverse=True)
    return [f"{k} {us / 1000:.1f} ms" for us, k in ranked[:12]]


# -- service runtime: provision and health -------------------------------------------------------------


def runtime_missing() -> str | None:
    for module in ("preview_slots.local.services", "preview_slots.runtime.provision",
                   "preview_slots.health", "supervisor"):
        try:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed"
        except ModuleNotFoundError:
            return f"{module} is not installed"
    return None


def measure_runtime(bench: Bench, out: SystemResult) -> None:
    from preview_slots.config import load_config
    from preview_slots.local import services

    state = bench.root / "stack"
    slots = [(f"r{n}", f"bench_rt_{n}") for n in (1, 2, 3)]
    state.mkdir(parents=True, exist_ok=True)
    runtime = services.local_config_toml(state)
    config_path = bench.write_config("runtime", slots=slots, prefix="pr_",
                                     control_plane="bench_cp_rt", seeds_dir=EXAMPLE_SEEDS,
                                     cache="spares = true", runtime=runtime)
    config = load_config(config_path)
    bench.stack = state
    log("service runtime: starting supervisord and Caddy for 3 slots")
    services.start_services(state, config)
    cli = bench.cli
    cli.run(config_path, "init")
    for slot_id, _db in slots:
        cli.run(config_path, *_allocate_args(f"rt-{slot_id}"), timeout=300)
    bench.quiesce()
    cli.run(config_path, "provision")  # settle: what allocate's restarts left to do
    # one more allocate per rep, end to end with the service restart and the routed health wait
    reps = max(bench.reps, 3)
    for n in range(reps):
        log(f"service runtime: rep {n + 1}/{reps}")
        victim = f"rt-{slots[n % 3][0]}"
        cli.run(config_path, "release", "--run-id", victim)
        bench.quiesce()
        cli.run(config_path, "prewarm", "--seed-version", SEED, "--json")
        bench.quiesce()
        elapsed, data = cli.timed_json(config_path, *_allocate_args(victim))
        _expect_succeeded(data)
        out.series("alloc_services", "allocate --json with services (restart + routed health)") \
            .values.append(elapsed)
        bench.quiesce()
        t0 = time.perf_counter()
        proc = cli.run(config_path, "provision", check=False)
        out.series("provision", "provision, nothing changed").values.append(
            time.perf_counter() - t0)
        if proc.returncode != 0 or "no changes" not in proc.stdout:
            out.info.append(f"provision (no change) said: {proc.stdout.strip()[-160:]!r} "
                            f"(exit {proc.returncode})")
    bench.quiesce()
    for _ in range(max(bench.reps * 2, 6)):  # health: cheap, noisy; more repetitions
        for key, name, extra in (("health3", "health, 3 slots", []),
                                 ("health1", "health, 1 slot", ["--slot", slots[0][0]])):
            t0 = time.perf_counter()
            proc = cli.run(config_path, "health", "--json", *extra, check=False)
            out.series(key, name).values.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                out.info.append(f"{name}: exit {proc.returncode} (unhealthy): "
                                f"{_health_summary(proc.stdout)}")


def _health_summary(stdout: str) -> str:
    try:
        data = json.loads(stdout)
    except json.JSONDecodeError:
        return stdout.strip()[-160:]
    return str(data.get("summary", data))[:200]


def stop_runtime(bench: Bench) -> None:
    if bench.stack is None:
        return
    from preview_slots.local import services

    try:
        services.stop_services(bench.stack)
    except Exception as exc:  # best effort at clean-up; say what was left
        log(f"could not stop the runtime's supervisord: {exc}")
    bench.stack = None

