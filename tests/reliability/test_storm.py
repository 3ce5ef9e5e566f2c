"""Many real allocate processes on three slots, with random SIGKILLs; the same run id twenty times
at once. The history checker reads ``lease_events`` afterwards (case C-05 at scale)."""

from __future__ import annotations

import json
import os
import random
import signal
from collections.abc import Callable

import pytest

from tests.conftest import Env
from tests.reliability import history
from tests.reliability.conftest import size
from tests.reliability.figures import record, verdict
from tests.reliability.harness import (
    StormResult,
    add_seeds,
    allocate_args,
    finish,
    is_stopped,
    spawn,
    storm,
    summary,
    wait_until,
)

# a reset TTL that heartbeats keep alive even when 200 clients load a 2-core host (load ~100);
# holds are released by the harness well before their TTL
LEASE = 'reset_ttl = "10s"\npoll_interval = "1s"'
HOLD_TTL = "60s"
LIVE = "state IN ('resetting', 'ready')"


def storm_env(make_env: Callable[..., Env]) -> Env:
    env = make_env(slots=3, lease=LEASE)
    add_seeds(env)
    return env


def reset_times(env: Env) -> list[float]:
    rows = env.cp("SELECT extract(epoch FROM r.at - g.at) FROM lease_events g JOIN lease_events r "
                  "USING (lease_id) WHERE g.event = 'granted' AND r.event = 'ready'")
    return [float(r[0]) for r in rows]


def idle_times(env: Env) -> list[float]:
    """Per slot, the time from one lease's end to the next grant."""
    rows = env.cp(
        "SELECT extract(epoch FROM g.at - e.at) FROM lease_events g "
        "JOIN LATERAL (SELECT max(at) AS at FROM lease_events x WHERE x.slot_id = g.slot_id "
        "AND x.id < g.id AND x.event IN ('released', 'expired', 'failed')) e ON e.at IS NOT NULL "
        "WHERE g.event = 'granted'")
    return [float(r[0]) for r in rows]


def after_storm_checks(env: Env, result: StormResult, test: str,
                       may_hold: set[str] | None = None) -> str:
    """The invariants every storm must keep, each recorded as a figure; returns what went wrong.
    Only killed clients (and ``may_hold``: clients that failed, say, while the control plane was
    down) may still hold a lease after the storm; theirs end at their TTL."""
    report = history.check(history.load(env.cp))
    record(test, "history: leases checked", report.leases)
    record(test, "overlapping holders (slot / run)",
           f"{len(report.slot_overlaps)} / {len(report.run_overlaps)}", "0 / 0",
           not report.slot_overlaps and not report.run_overlaps)
    record(test, "generation order errors, events after end",
           f"{len(report.generation_errors)}, {len(report.after_end)}", "0, 0",
           not report.generation_errors and not report.after_end)
    record(test, "max live leases", report.max_live, "<= 3", report.max_live <= 3)
    record(test, "reset time, granted to ready", summary(reset_times(env)))
    record(test, "slot idle between leases", summary(idle_times(env)))
    half = env.cp(
        "SELECT count(*) FROM lease_events e JOIN leases l USING (lease_id) "
        "LEFT JOIN preview_db_resets r ON r.id = l.reset_id "
        "WHERE e.event = 'ready' AND r.reset_status IS DISTINCT FROM 'succeeded'")[0][0]
    record(test, "ready leases without a succeeded reset", half, "0", half == 0)
    record(test, "bad handouts (wrong generation or partial data) / not checked in time",
           f"{len(result.bad_handouts)} / {result.unchecked}", "0 / -", not result.bad_handouts)
    # leaked slots: once every client is gone, only killed clients may still hold a lease (it ends
    # at its TTL); time-travel those, reap, and every slot must be free, active and usable again
    dead = {c.run_id for c in result.killed} | (may_hold or set())
    stray = [r for (r,) in env.cp(f"SELECT run_id FROM leases WHERE {LIVE}") if r not in dead]
    env.cp(f"UPDATE leases SET expires_at = now() - interval '1s' WHERE {LIVE}")
    env.cp("UPDATE waiters SET expires_at = now() - interval '1s'")  # killed while in line
    reaped = env.cli("reap")
    free = env.cp(f"SELECT count(*) FROM slots s WHERE status = 'active' AND NOT EXISTS "
                  f"(SELECT 1 FROM leases l WHERE l.slot_id = s.slot_id AND l.{LIVE})")[0][0]
    running = env.cp("SELECT count(*) FROM preview_db_resets WHERE reset_status = 'running'")[0][0]
    after = [env.cli(*allocate_args(f"after-{i}")) for i in range(3)]
    usable = len({json.loads(a.stdout)["slot_id"] for a in after if a.returncode == 0})
    leaked = len(stray) + (3 - free) + (3 - usable)
    record(test, "leaked slots (held by no live client, or unusable)", leaked, "0",
           leaked == 0 and reaped.returncode == 0)
    record(test, "resets left 'running' after reap", running, "0", running == 0)
    return "; ".join(filter(None, [
        "" if report.ok else report.describe(),
        f"leases still held by clients that exited: {stray}" if stray else "",
        "; ".join(a.stderr.strip() for a in after if a.returncode != 0),
    ]))


def test_allocation_storm_with_random_kills(make_env: Callable[..., Env]) -> None:
    n = size(40, 200)
    env = storm_env(make_env)
    result = storm(env, n, wait="1800s", ttl=HOLD_TTL, kill_fraction=0.15, rng=random.Random(5))
    test = f"storm: {n} allocate, 3 slots, 15% SIGKILL"
    codes = result.codes
    unexpected = result.unexpected({0, 3})
    record(test, "clients served / exit 3 / killed",
           f"{len(result.served)} / {codes.get(3, 0)} / {len(result.killed)}",
           "sum = n", len(result.served) + codes.get(3, 0) + len(result.killed) == n)
    record(test, "other exit codes", len(unexpected), "0", not unexpected)
    record(test, "time to be served", summary(result.wait_times()))
    record(test, "storm duration", f"{result.seconds:.0f}s")
    problems = after_storm_checks(env, result, test)
    verdict(test, problems, [(c.run_id, c.code, c.stderr[-500:]) for c in unexpected[:5]],
            result.bad_handouts[:5])


@pytest.mark.parametrize("free", [3, 1])
def test_same_run_id_twenty_times_at_once(make_env: Callable[..., Env], free: int) -> None:
    """Twenty processes of one run at once, on three free slots, or on the one slot left free
    (the others held). Each claim holds its slot's row lock a while (failpoint in_claim), so
    claims overlap: a locked free slot must not make the others see "no slot free"."""
    env = storm_env(make_env)
    for i in range(3 - free):
        assert env.cli(*allocate_args(f"other{i}", "tiny")).returncode == 0
    clients = [spawn(env, allocate_args("same-run", "v1"), name=f"same{i}",
                     failpoint="in_claim:sleep(0.3)") for i in range(20)]
    for client in clients:
        finish(client)
    codes = [c.code for c in clients]
    answers = {(d["slot_id"], d["generation"], d["reset_id"], d["db_name"])
               for d in (json.loads(c.stdout) for c in clients if c.code == 0)}
    grants = env.cp("SELECT count(*) FROM lease_events WHERE run_id = 'same-run' "
                    "AND event = 'granted'")[0][0]
    resets = env.cp("SELECT count(*) FROM preview_db_resets WHERE run_id = 'same-run'")[0][0]
    live = env.cp(f"SELECT count(*) FROM leases WHERE run_id = 'same-run' AND {LIVE}")[0][0]
    test = f"same run id x20 at once, {free} slot{'s' if free > 1 else ''} free"
    record(test, "exit 0", f"{codes.count(0)}/20", "20/20", codes.count(0) == 20)
    record(test, "distinct answers (slot, generation, reset)", len(answers), "1",
           len(answers) == 1)
    record(test, "live leases / grants / resets", f"{live} / {grants} / {resets}", "1 / 1 / 1",
           (live, grants, resets) == (1, 1, 1))
    verdict(test, [c.stderr[-300:] for c in clients if c.code != 0][:3])


def test_regression_a_free_slot_locked_by_a_claim_is_not_no_slot_free(
        make_env: Callable[..., Env]) -> None:
    """Regression (seen as a flaky C-05): process B of run R had found that R held nothing when
    process A of R locked the only free slot in its claim; B's SKIP LOCKED pick passed over it and
    B answered "no slot free" (exit 3) although its own run was getting a slot. B must look again
    and return A's lease. Staged with failpoints: B stops before its claim, A sleeps inside its
    claim, B resumes."""
    env = storm_env(make_env)
    for i in range(2):
        assert env.cli(*allocate_args(f"other{i}", "tiny")).returncode == 0
    b = spawn(env, allocate_args("R", "tiny"), name="b", failpoint="before_claim:stop")
    wait_until(lambda: is_stopped(b.proc.pid), 30, "B to stop before its claim")
    a = spawn(env, allocate_args("R", "tiny"), name="a", failpoint="in_claim:sleep(3)")
    wait_until(lambda: env.query(
        "postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
        "AND state = 'idle in transaction'", (env.config.control_plane.dbname,)) == [(1,)],
        30, "A to hold the slot's row lock in its claim")
    os.kill(b.proc.pid, signal.SIGCONT)
    finish(a)
    finish(b)
    answers = {json.loads(c.stdout)["generation"] for c in (a, b) if c.code == 0}
    test = "regression: a claim's row lock is not 'no slot free'"
    record(test, "A / B exit, distinct answers", f"{a.code} / {b.code}, {len(answers)}",
           "0 / 0, 1", (a.code, b.code, len(answers)) == (0, 0, 1))
    verdict(test, b.stderr[-300:])
