"""Recovery from dead runs: SIGKILL at each failpoint (case C-06), a retried run id taking over its
own slot, a lost reply, a poison seed quarantining its slot, ``reap``."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import pytest

from tests.conftest import Env
from tests.reliability.conftest import FULL, size
from tests.reliability.figures import record, verdict
from tests.reliability.harness import add_seeds, allocate_args, without_template_cache

LEASE = 'reset_ttl = "3s"\npoll_interval = "1s"'
FAST_LEASE = 'reset_ttl = "2s"\npoll_interval = "0.5s"'
LIVE = "state IN ('resetting', 'ready')"
KILLED = -signal.SIGKILL
SLACK = 1.0  # scheduling and query latency on a loaded 2-core CI machine

KILL_STEPS = ["after_claim", "after_create", "mid_seed", "before_swap", "after_swap", "before_ready"]
# (failpoint, template cache on?): mid_seed exists on the direct seeding path only
KILL_POINTS = [(s, False) for s in KILL_STEPS] + (
    [("after_create", True), ("before_swap", True), ("after_swap", True)] if FULL else [])


def fail_at(step: str) -> dict[str, str]:
    return {"PREVIEW_SLOTS_FAILPOINT": f"{step}:kill"}


@pytest.mark.parametrize(("step", "cache"), KILL_POINTS)
def test_sigkill_at_each_failpoint(make_env: Callable[..., Env], step: str, cache: bool) -> None:
    """Killed at the step, the slot comes back within reset TTL + poll interval of the dead run's
    last heartbeat; its row ends abandoned; the next holder gets a complete database."""
    env = make_env(slots=1, lease=FAST_LEASE)
    if not cache:
        without_template_cache(env)
    add_seeds(env, pause=0.8)
    slot = env.config.slots[0]
    assert env.cli(*allocate_args("ref", "tiny")).returncode == 0
    reference = env.checksum(slot.database)
    assert env.cli("release", "--run-id", "ref").returncode == 0
    bound = env.config.lease.reset_ttl + env.config.lease.poll_interval
    recoveries: list[float] = []
    kills, rows, readies, complete = 0, [], 0, 0
    for i in range(size(1, 5)):
        a = env.cli(*allocate_args(f"A{i}", "slow" if step == "mid_seed" else "tiny"),
                    env=fail_at(step))
        kills += a.returncode == KILLED
        b = env.cli(*allocate_args(f"B{i}", "tiny", "--wait", "30s"))
        assert b.returncode == 0, b.stderr
        data = json.loads(b.stdout)
        gap = env.cp(
            "SELECT extract(epoch FROM g.at - l.heartbeat_at) FROM lease_events g, leases l "
            "WHERE g.run_id = %s AND g.event = 'granted' AND l.run_id = %s",
            (f"B{i}", f"A{i}"))[0][0]
        recoveries.append(float(gap))
        rows += [r for (r,) in env.cp("SELECT reset_status FROM preview_db_resets "
                                      "WHERE run_id = %s", (f"A{i}",))]
        readies += env.cp("SELECT count(*) FROM lease_events WHERE run_id = %s "
                          "AND event = 'ready'", (f"A{i}",))[0][0]
        complete += (env.checksum(slot.database) == reference
                     and data["reset_status"] == "succeeded"
                     and data["generation"] == env.cp("SELECT generation FROM slots")[0][0])
        assert env.cli("release", "--run-id", f"B{i}").returncode == 0
    n = size(1, 5)
    test = f"SIGKILL at {step}{' (template cache)' if cache else ''} x{n}"
    record(test, "killed / next holder complete", f"{kills}/{n} / {complete}/{n}",
           f"{n}/{n} / {n}/{n}", kills == n and complete == n)
    record(test, "recovery after last heartbeat (max)", f"{max(recoveries):.2f}s",
           f"<= {bound:g}s TTL+poll", max(recoveries) <= bound + SLACK)
    record(test, "dead run's rows / ever ready", f"{sorted(set(rows)) or ['none']} / {readies}",
           "abandoned or none / 0", set(rows) <= {"abandoned"} and readies == 0)
    verdict(test)


def test_c06_killed_mid_seed_status_then_takeover(make_env: Callable[..., Env]) -> None:
    # a TTL long enough that A's lease surely outlives the status calls; then time travel
    env = without_template_cache(make_env(slots=1, lease='reset_ttl = "30s"'))
    add_seeds(env)
    a = env.cli(*allocate_args("A", "slow"), env=fail_at("mid_seed"))
    status = json.loads(env.cli("status", "--json").stdout)[0]
    text = env.cli("status").stdout
    refused = env.cli(*allocate_args("B", "v1"))  # a live lease is never taken
    env.cp(f"UPDATE leases SET expires_at = now() - interval '1s' WHERE run_id = 'A' AND {LIVE}")
    b = env.cli(*allocate_args("B", "v1"))
    data = json.loads(b.stdout) if b.returncode == 0 else {}
    row = env.cp("SELECT reset_status, finished_at IS NOT NULL, details->>'error' "
                 "FROM preview_db_resets WHERE run_id = 'A'")[0]
    customers = env.query(env.config.slots[0].database, "SELECT count(*) FROM customers")[0][0]
    after = json.loads(env.cli("status", "--json").stdout)[0]
    test = "C-06 killed mid-seed, then B"
    record(test, "A killed", a.returncode, str(KILLED), a.returncode == KILLED)
    shown = (status["run_id"], status["state"], status["age_seconds"] is not None,
             status["expires_in_seconds"] > 0, status["heartbeat_at"] is not None)
    record(test, "status: holder, state, age, expiry, heartbeat", shown,
           "('A', 'resetting', True, True, True)", shown == ("A", "resetting", True, True, True))
    record(test, "status table has the heartbeat column", "HEARTBEAT" in text, "True",
           "HEARTBEAT" in text and " A " in text)
    record(test, "B before A's expiry: exit, names A", f"{refused.returncode}, "
           f"{'held by A (resetting, expires in' in refused.stderr}", "3, True",
           refused.returncode == 3 and "held by A (resetting, expires in" in refused.stderr)
    record(test, "B after: exit, reset, customers", f"{b.returncode}, "
           f"{data.get('reset_status')}, {customers}", "0, succeeded, 100",
           (b.returncode, data.get("reset_status"), customers) == (0, "succeeded", 100))
    record(test, "A's row: status, finished, says why", f"{row[0]}, {row[1]}, {bool(row[2])}",
           "abandoned, True, True", row[0] == "abandoned" and row[1] and bool(row[2]))
    record(test, "status after: holder", f"{after['run_id']} {after['state']}", "B ready",
           (after["run_id"], after["state"]) == ("B", "ready"))
    verdict(test, b.stderr[-300:])


def test_retried_run_takes_over_its_own_slot_with_a_new_generation(
        make_env: Callable[..., Env]) -> None:
    """No time travel: the retry finds its own dead attempt still resetting, waits for the lease
    to run out (its heartbeat stopped) and takes the same slot with generation + 1, although other
    slots are free and released longer ago."""
    env = without_template_cache(make_env(slots=3, lease=LEASE))
    add_seeds(env)
    first = env.cli(*allocate_args("A", "slow"), env=fail_at("mid_seed"))
    slot_a, gen_a, beat = env.cp("SELECT slot_id, generation, heartbeat_at FROM leases "
                                 "WHERE run_id = 'A'")[0]
    started = time.monotonic()
    retry = env.cli(*allocate_args("A", "slow"))
    took = time.monotonic() - started
    data = json.loads(retry.stdout) if retry.returncode == 0 else {}
    events = [e for (e,) in env.cp("SELECT event FROM lease_events WHERE run_id = 'A' "
                                   "ORDER BY id")]
    gap = env.cp("SELECT extract(epoch FROM max(at) FILTER (WHERE event = 'granted') - %s) "
                 "FROM lease_events WHERE run_id = 'A'", (beat,))[0][0]
    bound = env.config.lease.reset_ttl + env.config.lease.poll_interval
    test = "retried run id after its first attempt died"
    record(test, "first attempt killed / retry exit", f"{first.returncode} / {retry.returncode}",
           f"{KILLED} / 0", (first.returncode, retry.returncode) == (KILLED, 0))
    record(test, "same slot, generation", f"{data.get('slot_id') == slot_a}, "
           f"{gen_a} -> {data.get('generation')}", f"True, {gen_a} -> {gen_a + 1}",
           data.get("slot_id") == slot_a and data.get("generation") == gen_a + 1)
    record(test, "events of the run", " ".join(events), "granted expired granted ready",
           events == ["granted", "expired", "granted", "ready"])
    record(test, "takeover after last heartbeat / retry took", f"{float(gap):.1f}s / {took:.1f}s",
           f"<= {bound:g}s TTL+poll", float(gap) <= bound + SLACK)
    verdict(test, retry.stderr[-300:])


def test_lost_reply_retry_gets_the_same_lease(make_env: Callable[..., Env]) -> None:
    """Killed after the lease turned ready but before printing the answer: the retry with the same
    run id gets that lease back, consuming no other slot and resetting nothing."""
    env = make_env(slots=3, lease=LEASE)
    add_seeds(env)
    n = size(3, 20)
    same, killed, extra = 0, 0, 0
    for i in range(n):
        run = f"R{i}"
        a = env.cli(*allocate_args(run, "tiny"), env=fail_at("after_ready"))
        killed += a.returncode == KILLED
        lease = env.cp(f"SELECT slot_id, generation FROM leases WHERE run_id = %s AND {LIVE}",
                       (run,))
        retry = env.cli(*allocate_args(run, "tiny"))
        data = json.loads(retry.stdout) if retry.returncode == 0 else {}
        same += (lease == [(data.get("slot_id"), data.get("generation"))]
                 and data.get("reused") is True and data.get("reset_status") == "succeeded")
        counts = env.cp("SELECT (SELECT count(*) FROM leases WHERE run_id = %s), "
                        "(SELECT count(*) FROM preview_db_resets WHERE run_id = %s)", (run, run))
        extra += counts != [(1, 1)]
        assert env.cli("release", "--run-id", run).returncode == 0
    test = f"lost reply (killed after ready) x{n}"
    record(test, "killed / retry got the same lease", f"{killed}/{n} / {same}/{n}",
           f"{n}/{n} / {n}/{n}", killed == n and same == n)
    record(test, "extra leases or resets", extra, "0", extra == 0)
    verdict(test)


def test_poison_seed_quarantines_its_slot_others_keep_serving(
        make_env: Callable[..., Env]) -> None:
    # without the template cache the seed runs in the slot's own build database, where a failure
    # counts toward the slot's quarantine (a failure while building a shared template does not)
    env = make_env(slots=2, lease=LEASE, cache="background_prewarm = false\ntemplates = false")
    add_seeds(env)
    poison = env.config.seeds_dir / "poison"
    poison.mkdir()
    (poison / "001_bad.sql").write_text("CREATE TABLE half (id int);\nSELECT 1 / 0;\n")
    assert env.cli(*allocate_args("good1", "tiny")).returncode == 0
    held = json.loads(env.cli(*allocate_args("good2", "tiny")).stdout)["slot_id"]
    assert env.cli("release", "--run-id", "good1").returncode == 0
    bad_slot = next(s for s in env.config.slots if s.id != held)
    before = env.checksum(bad_slot.database)
    failures = [env.cli(*allocate_args(f"p{i}", "poison")) for i in range(3)]
    status = {s["slot_id"]: s for s in json.loads(env.cli("status", "--json").stdout)}
    text = env.cli("status").stdout
    fourth = env.cli(*allocate_args("p3", "poison"))
    attempts = env.cp("SELECT count(*) FROM preview_db_resets WHERE run_id LIKE 'p%%'")[0][0]
    assert env.cli("release", "--run-id", "good2").returncode == 0
    served = []
    for i in range(size(3, 10)):
        served.append(env.cli(*allocate_args(f"after{i}", "tiny")))
        env.cli("release", "--run-id", f"after{i}")
    slots_used = {json.loads(r.stdout)["slot_id"] for r in served if r.returncode == 0}
    back = env.cli("unquarantine", "--slot", bad_slot.id)
    test = "poison seed, 3 failures in a row"
    record(test, "failed attempts: exit 1, say why", [r.returncode for r in failures],
           "[1, 1, 1]", [r.returncode for r in failures] == [1, 1, 1]
           and all("division by zero" in r.stderr for r in failures))
    record(test, "last failure says quarantined", "quarantined" in failures[-1].stderr, "True",
           "quarantined" in failures[-1].stderr)
    record(test, "status: state, failures", f"{status[bad_slot.id]['state']}, "
           f"{status[bad_slot.id]['consecutive_failures']}", "quarantined, 3",
           (status[bad_slot.id]["state"], status[bad_slot.id]["consecutive_failures"])
           == ("quarantined", 3) and "quarantined" in text)
    record(test, "4th attempt: exit / resets attempted", f"{fourth.returncode} / {attempts}",
           "3 / 3", fourth.returncode == 3 and attempts == 3)
    record(test, "slot database untouched by failed resets",
           env.checksum(bad_slot.database) == before, "True",
           env.checksum(bad_slot.database) == before)
    ok = [r for r in served if r.returncode == 0]
    record(test, "other slot keeps serving", f"{len(ok)}/{len(served)} on {len(slots_used)} slot",
           f"{len(served)}/{len(served)} on 1 slot",
           len(ok) == len(served) and slots_used == {held})
    record(test, "unquarantine", back.returncode, "0", back.returncode == 0)
    verdict(test, [r.stderr[-200:] for r in served if r.returncode][:2])


def test_reap_ends_expired_leases_and_abandons_their_resets(make_env: Callable[..., Env]) -> None:
    env = make_env(slots=2, lease=LEASE)
    add_seeds(env)
    a = env.cli(*allocate_args("A", "tiny"), env=fail_at("before_swap"))
    early = json.loads(env.cli("reap", "--json").stdout)  # A's lease is live: nothing to do
    env.cp(f"UPDATE leases SET expires_at = now() - interval '1s' WHERE {LIVE}")
    reaped = json.loads(env.cli("reap", "--json").stdout)
    slot = env.cp("SELECT slot_id FROM leases WHERE run_id = 'A'")[0][0]
    row = env.cp("SELECT reset_status FROM preview_db_resets WHERE run_id = 'A'")[0][0]
    state = env.cp("SELECT state, end_reason FROM leases WHERE run_id = 'A'")[0]
    test = "reap"
    record(test, "A killed; reap before / after expiry",
           f"{a.returncode}; {early['expired_slots']} / {reaped['expired_slots']}",
           f"{KILLED}; [] / [{slot}]", a.returncode == KILLED and early["expired_slots"] == []
           and reaped["expired_slots"] == [slot])
    record(test, "lease / row", f"{state[0]} ({state[1]}) / {row}", "expired (ttl) / abandoned",
           state == ("expired", "ttl") and row == "abandoned")
    verdict(test)
