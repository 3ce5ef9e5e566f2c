"""Fencing: a holder paused past its lease can change nothing once resumed (case C-12), a reset
longer than its TTL survives on heartbeats, and a lease released mid-reset stops the resetter."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from preview_slots.errors import LeaseLost
from preview_slots.local.pg import LocalPostgres
from preview_slots.pgadmin import SlotServer, build_name, marker
from preview_slots.sources import apply_seed, fence_prelude, resolve_seed
from tests.conftest import Env
from tests.reliability.conftest import FULL
from tests.reliability.figures import record, verdict
from tests.reliability.harness import (
    add_seeds,
    allocate_args,
    finish,
    is_stopped,
    spawn,
    wait_until,
    without_template_cache,
)

LEASE = 'reset_ttl = "3s"\npoll_interval = "1s"'
LIVE = "state IN ('resetting', 'ready')"
SEED_STEPS = ["after_claim", "after_create", "mid_seed", "before_swap", "after_swap", "before_ready"]
# (failpoint, template cache on?): without the cache the slot is seeded directly (the seeding
# transaction re-checks the marker); with it, the build is cloned from a template
# (failpoint, template cache on?, paused for real past the TTL rather than time travel)
STOP_POINTS = ([(s, False, False) for s in SEED_STEPS]
               + [("after_create", True, False), ("before_swap", True, False),
                  ("before_swap", False, True)]
               if FULL else [("after_claim", False, False), ("mid_seed", False, False),
                             ("before_swap", False, False), ("before_swap", True, False)])


def children_done(pid: int) -> bool:
    """True when none of ``pid``'s children is still running (a stopped parent cannot reap them:
    finished ones stay zombies)."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return True
    for kid in kids:
        try:
            state = Path(f"/proc/{kid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
        if state != "Z":
            return False
    return True


@contextmanager
def statement_log(env: Env) -> Iterator[None]:
    """Log every statement the server receives while inside (``log_statement = 'all'``)."""
    env.query("postgres", "ALTER SYSTEM SET log_statement = 'all'")
    env.query("postgres", "SELECT pg_reload_conf()")
    wait_until(lambda: env.query("postgres", "SHOW log_statement") == [("all",)], 10,
               "the server to log statements")
    try:
        yield
    finally:
        env.query("postgres", "ALTER SYSTEM RESET log_statement")
        env.query("postgres", "SELECT pg_reload_conf()")


def marker_of(env: Env, db: str) -> str | None:
    rows = env.query("postgres", "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                     "WHERE datname = %s", (db,))
    return rows[0][0] if rows else None


@pytest.mark.parametrize(("step", "cache", "real_pause"), STOP_POINTS)
def test_c12_paused_holder_changes_nothing_after_resuming(
        make_env: Callable[..., Env], pg: LocalPostgres, step: str, cache: bool,
        real_pause: bool) -> None:
    env = make_env(slots=1, lease=LEASE)
    if not cache:
        without_template_cache(env)
    add_seeds(env)
    slot = env.config.slots[0]
    # A stops itself at the step; psql (its child) is not stopped and may finish meanwhile
    a = spawn(env, allocate_args("A", "slow"), name="A", failpoint=f"{step}:stop")
    wait_until(lambda: is_stopped(a.proc.pid), 60, f"A to stop at {step}")
    wait_until(lambda: children_done(a.proc.pid), 30, "A's psql to finish")
    gen_a = env.cp("SELECT generation FROM leases WHERE run_id = 'A' AND state = 'resetting'")[0][0]
    if real_pause:  # B waits in line until A's lease runs out by itself
        b = env.cli(*allocate_args("B", "v1", "--wait", "30s"))
    else:  # A is paused past its TTL: time travel rather than sleeping
        env.cp(f"UPDATE leases SET expires_at = now() - interval '1s' "
               f"WHERE run_id = 'A' AND {LIVE}")
        b = env.cli(*allocate_args("B", "v1"))
    assert b.returncode == 0, b.stderr
    data_b = json.loads(b.stdout)
    before = env.checksum(slot.database)
    offset = pg.logfile.stat().st_size
    with statement_log(env):
        os.kill(a.proc.pid, signal.SIGCONT)
        finish(a, timeout=60)
        log = pg.logfile.read_bytes()[offset:].decode(errors="replace").splitlines()
    stale = [line for line in log if f"gen={gen_a} db=" in line
             and ("LOG:  statement:" in line or "LOG:  execute" in line)]
    into_b = [line for line in stale if f"db={slot.database}:" in line]
    how = " (template cache)" if cache else " (paused 1 TTL for real)" if real_pause else ""
    test = f"C-12 SIGSTOP at {step}{how}, B takes over"
    record(test, "A exit code / says lease lost", f"{a.code} / {'lease lost' in a.stderr}",
           "1 / True", a.code == 1 and "lease lost" in a.stderr)
    record(test, "statements from A after resuming (into B's database)",
           f"{len(stale)} ({len(into_b)})", "0 (0)", not stale)
    after = env.checksum(slot.database)
    still_b = marker_of(env, slot.database) == (
        f"preview-slots slot={slot.id} generation={data_b['generation']}")
    record(test, "B's checksum unchanged, database still B's generation",
           f"{after == before}, {still_b}", "True, True", after == before and still_b)
    rows = env.cp("SELECT reset_status FROM preview_db_resets WHERE run_id = 'A'")
    a_ready = env.cp("SELECT count(*) FROM lease_events WHERE run_id = 'A' AND event = 'ready'")
    record(test, "A's reset row / A ever ready", f"{[r[0] for r in rows]} / {a_ready[0][0]}",
           "abandoned or none / 0",
           all(r[0] == "abandoned" for r in rows) and a_ready == [(0,)])
    verdict(test, a.stderr.strip()[-400:], stale[:3])


def test_heartbeats_keep_a_reset_longer_than_its_ttl(make_env: Callable[..., Env]) -> None:
    """A seed that takes 2.5x the reset TTL: heartbeats keep the lease; a waiting run never gets
    the slot before the holder is done (no false takeover)."""
    env = make_env(slots=1, lease=LEASE)
    add_seeds(env, pause=7.5)
    a = spawn(env, allocate_args("A", "slow"), name="A")
    wait_until(lambda: env.cp("SELECT count(*) FROM leases WHERE run_id = 'A'") == [(1,)], 30,
               "A's lease")
    b = spawn(env, allocate_args("B", "tiny", "--wait", "60s"), name="B")
    finish(a)
    a_done = time.monotonic()
    release = env.cli("release", "--run-id", "A")
    finish(b)
    events = env.cp("SELECT event FROM lease_events WHERE run_id = 'A' ORDER BY id")
    beats = env.cp("SELECT extract(epoch FROM heartbeat_at - granted_at) FROM leases "
                   "WHERE run_id = 'A'")[0][0]
    test = "heartbeats: reset 2.5x TTL, B waiting"
    record(test, "A exit / B exit", f"{a.code} / {b.code}", "0 / 0", (a.code, b.code) == (0, 0))
    record(test, "A's lease events", " ".join(e for (e,) in events), "granted ready released",
           [e for (e,) in events] == ["granted", "ready", "released"])
    record(test, "A's last heartbeat after grant", f"{float(beats):.1f}s", "> TTL (3s)",
           float(beats) > 3)
    record(test, "B served after A released", b.ended is not None and b.ended >= a_done,
           "True", b.ended is not None and b.ended >= a_done and release.returncode == 0)
    verdict(test, a.stderr[-300:], b.stderr[-300:])


def test_release_during_reset_stops_the_resetter(make_env: Callable[..., Env]) -> None:
    """CI cancelled the job and released the run while its reset ran: the resetter notices at its
    next heartbeat or check and stops with "lease lost"; the slot's database is untouched."""
    env = make_env(slots=1, lease=LEASE)
    add_seeds(env, pause=3)
    first = env.cli(*allocate_args("first", "tiny"))
    assert first.returncode == 0, first.stderr
    assert env.cli("release", "--run-id", "first").returncode == 0
    slot = env.config.slots[0]
    before = env.checksum(slot.database)
    a = spawn(env, allocate_args("A", "slow"), name="A")
    wait_until(lambda: env.cp("SELECT count(*) FROM preview_db_resets WHERE run_id = 'A'")
               == [(1,)], 30, "A's reset to start")
    released_at = time.monotonic()
    assert env.cli("release", "--run-id", "A").returncode == 0
    finish(a)
    assert a.ended is not None
    took = a.ended - released_at
    row = env.cp("SELECT reset_status FROM preview_db_resets WHERE run_id = 'A'")[0][0]
    test = "release during a reset"
    record(test, "resetter exit / says lease lost", f"{a.code} / {'lease lost' in a.stderr}",
           "1 / True", a.code == 1 and "lease lost" in a.stderr)
    record(test, "resetter stopped after release", f"{took:.1f}s", "-")
    record(test, "A's reset row / slot database unchanged",
           f"{row} / {env.checksum(slot.database) == before}", "abandoned / True",
           row == "abandoned" and env.checksum(slot.database) == before)
    verdict(test, a.stderr[-300:])


def test_seeding_transaction_rechecks_the_generation_marker(make_env: Callable[..., Env]) -> None:
    """The storage-side check: a seeder of generation 7 that reaches a build database already
    marked for generation 8 aborts in its first statement and leaves nothing behind."""
    env = without_template_cache(make_env(slots=1))
    slot = env.config.slots[0]
    build = build_name(env.config, slot)
    source = resolve_seed(env.config, "v1")
    with SlotServer(env.config) as server:
        server.create(build, comment=marker(slot, 8))
        try:
            with pytest.raises(LeaseLost) as lost:
                apply_seed(env.config, source, build, prelude=fence_prelude(marker(slot, 7)),
                           application_name="stale seeder")
            stale_tables = env.query(build, "SELECT count(*) FROM pg_tables "
                                     "WHERE schemaname = 'public'")[0][0]
            apply_seed(env.config, source, build, prelude=fence_prelude(marker(slot, 8)),
                       application_name="current seeder")
            tables = env.query(build, "SELECT count(*) FROM pg_tables "
                               "WHERE schemaname = 'public'")[0][0]
        finally:
            server.drop(build)
    test = "seeding transaction re-checks the marker"
    record(test, "stale seeder: lease lost / tables created",
           f"{'lease lost' in lost.value.message} / {stale_tables}", "True / 0",
           "lease lost" in lost.value.message and stale_tables == 0)
    record(test, "current seeder: tables created", tables, "> 0", tables > 0)
    verdict(test)
