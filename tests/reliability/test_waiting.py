"""Waiting for a slot: served in arrival order, woken promptly by NOTIFY, polling when a
notification is lost, a dead waiter drops out of line, a timeout names holders and expiries."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

from preview_slots.service import release
from tests.conftest import Env
from tests.reliability.conftest import size
from tests.reliability.figures import record, verdict
from tests.reliability.harness import (
    Client,
    add_seeds,
    allocate_args,
    finish,
    spawn,
    summary,
    wait_until,
)

LEASE = 'reset_ttl = "3s"\npoll_interval = "1s"'
LIVE = "state IN ('resetting', 'ready')"
SLACK = 1.0


def queued(env: Env, run_id: str) -> bool:
    return env.cp("SELECT count(*) FROM waiters WHERE run_id = %s", (run_id,)) == [(1,)]


def join_line(env: Env, run_id: str, wait: str = "120s") -> Client:
    """Start a waiter and return once its place in line is recorded (arrival order is known)."""
    client = spawn(env, allocate_args(run_id, "tiny", "--wait", wait), name=run_id)
    wait_until(lambda: queued(env, run_id), 30, f"{run_id} to join the line")
    return client


def serve_in_turn(env: Env, clients: list[Client]) -> None:
    """Play the CI jobs: each served client releases its slot at once."""
    pending = list(clients)
    deadline = time.monotonic() + 180
    while pending and time.monotonic() < deadline:
        for client in list(pending):
            if client.proc.poll() is not None:
                finish(client)
                pending.remove(client)
                if client.code == 0:
                    release(env.config, client.run_id)
        time.sleep(0.02)


def grant_order(env: Env) -> list[str]:
    return [r for (r,) in env.cp("SELECT run_id FROM lease_events WHERE event = 'granted' "
                                 "ORDER BY id")]


def handover_gaps(env: Env) -> list[float]:
    """For each grant, the seconds since the slot's previous lease ended."""
    rows = env.cp(
        "SELECT extract(epoch FROM g.at - (SELECT max(e.at) FROM lease_events e "
        "WHERE e.slot_id = g.slot_id AND e.id < g.id AND e.event = 'released')) "
        "FROM lease_events g WHERE g.event = 'granted' ORDER BY g.id")
    return [float(r[0]) for r in rows if r[0] is not None]


def test_waiters_are_served_in_arrival_order(make_env: Callable[..., Env]) -> None:
    env = make_env(slots=1, lease=LEASE)
    add_seeds(env)
    assert env.cli(*allocate_args("holder", "tiny")).returncode == 0
    k = size(4, 8)
    clients = [join_line(env, f"w{i}") for i in range(k)]
    release(env.config, "holder")
    serve_in_turn(env, clients)
    order = grant_order(env)[1:]
    expected = [f"w{i}" for i in range(k)]
    gaps = handover_gaps(env)
    test = f"waiting: {k} waiters on 1 slot"
    record(test, "served", f"{sum(c.code == 0 for c in clients)}/{k}", f"{k}/{k}",
           all(c.code == 0 for c in clients))
    record(test, "grant order = arrival order", order == expected, "True", order == expected)
    record(test, "release to next grant (NOTIFY)", summary(gaps), "max <= 1s",
           bool(gaps) and max(gaps) <= 1.0 + SLACK / 2)
    left = env.cp("SELECT count(*) FROM waiters")[0][0]
    record(test, "places left in line afterwards", left, "0", left == 0)
    verdict(test, order, [c.stderr[-200:] for c in clients if c.code][:2])


def test_newcomers_queue_behind_waiters(make_env: Callable[..., Env]) -> None:
    """A slot that frees up goes to the oldest waiter, not to a caller who just arrived, even one
    that does not wait at all. The release sends no notification and the waiter polls only every
    10 s, so the newcomer surely comes first: only the line keeps it from taking the slot."""
    env = make_env(slots=1, lease='reset_ttl = "3s"\npoll_interval = "10s"')
    add_seeds(env)
    assert env.cli(*allocate_args("holder", "tiny")).returncode == 0
    early = join_line(env, "early")
    release_silently(env, "holder")
    rushing = env.cli(*allocate_args("rushing", "tiny"))
    finish(early)
    test = "waiting: newcomer vs waiter"
    record(test, "waiter / newcomer without --wait", f"{early.code} / {rushing.returncode}",
           "0 / 3", (early.code, rushing.returncode) == (0, 3))
    record(test, "grant order", grant_order(env)[1:], "['early']", grant_order(env)[1:] == ["early"])
    verdict(test, rushing.stderr[-200:])


def release_silently(env: Env, run_id: str) -> None:
    """End a lease behind the tool's back: no pg_notify, as if the notification were lost."""
    env.cp(f"WITH ended AS (UPDATE leases SET state = 'released', ended_at = now(), "
           f"end_reason = 'released' WHERE run_id = %s AND {LIVE} "
           f"RETURNING lease_id, slot_id, run_id, generation) "
           f"INSERT INTO lease_events (slot_id, run_id, lease_id, generation, event) "
           f"SELECT slot_id, run_id, lease_id, generation, 'released' FROM ended", (run_id,))


def test_a_dead_waiter_does_not_block_the_line(make_env: Callable[..., Env]) -> None:
    """The first in line is SIGKILLed: its session is gone at once, so the next waiter gets the
    slot on the release's notification, without waiting for the dead one's place to lapse."""
    env = make_env(slots=1, lease=LEASE)
    add_seeds(env)
    assert env.cli(*allocate_args("holder", "tiny")).returncode == 0
    dead = join_line(env, "dead")
    alive = join_line(env, "alive")
    dead.proc.send_signal(signal.SIGKILL)
    finish(dead)
    release(env.config, "holder")
    finish(alive)
    gap = handover_gaps(env)[-1]
    place_ttl = 3 * env.config.lease.poll_interval + 1
    test = "waiting: the first in line was SIGKILLed"
    record(test, "next waiter served", alive.code, "0", alive.code == 0)
    record(test, "release to next grant", f"{gap:.1f}s",
           f"<= 1s (not the {place_ttl:g}s place TTL)", gap <= 1.0 + SLACK / 2)
    verdict(test, alive.stderr[-200:])


def test_polling_fallback_when_a_notification_is_lost(make_env: Callable[..., Env]) -> None:
    env = make_env(slots=1, lease=LEASE)
    add_seeds(env)
    assert env.cli(*allocate_args("holder", "tiny")).returncode == 0
    waiter = join_line(env, "waiter")
    release_silently(env, "holder")
    finish(waiter)
    gap = handover_gaps(env)[-1]
    bound = env.config.lease.poll_interval
    test = "waiting: release without a notification"
    record(test, "waiter served / after", f"{waiter.code} / {gap:.1f}s", f"0 / <= {bound:g}s poll",
           waiter.code == 0 and gap <= bound + SLACK)
    verdict(test, waiter.stderr[-200:])


def test_wait_timeout_exits_3_naming_holders_and_expiries(make_env: Callable[..., Env]) -> None:
    env = make_env(slots=3, lease=LEASE)
    add_seeds(env)
    holders = [f"h{i}" for i in range(3)]
    for run in holders:
        assert env.cli(*allocate_args(run, "tiny")).returncode == 0
    started = time.monotonic()
    late = env.cli(*allocate_args("late", "tiny", "--wait", "2s"))
    took = time.monotonic() - started
    last_line = late.stderr.strip().splitlines()[-1]
    named = all(f"held by {run} (ready, expires in" in last_line for run in holders)
    test = "waiting: --wait 2s, 3 slots held"
    record(test, "exit / took (incl. start-up)", f"{late.returncode} / {took:.1f}s", "3 / 2-4s",
           late.returncode == 3 and 2 <= took <= 4 + SLACK)
    record(test, "one line naming each holder and expiry", named, "True", named)
    left = env.cp("SELECT count(*) FROM waiters")[0][0]
    record(test, "place in line given up", left == 0, "True", left == 0)
    verdict(test, late.stderr)
    assert json.loads(env.cli("status", "--json").stdout)[0]["state"] == "ready"
