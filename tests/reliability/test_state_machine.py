"""A model-based test of the lease layer against the real control plane (hypothesis stateful).

Rules: allocate (claim), mark ready, heartbeat, renew, release, expire (time travel plus the
sweep), crash (the client forgets its lease) and retry (allocate again). After every step: at most
one live lease per slot and per run, generations strictly increasing per slot, the database agrees
with the model, stale lease objects are fenced out, no reset row stays 'running' without its lease.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from psycopg import errors as pg_errors

from preview_slots.controlplane import ControlPlane, Lease, ResetStatus
from tests.conftest import Env
from tests.reliability.conftest import size
from tests.reliability.figures import record, verdict

RUNS = ["r1", "r2", "r3", "r4", "r5"]
TTL = 60.0
LIVE = "state IN ('resetting', 'ready')"


@dataclass
class Held:
    slot_id: str
    lease_id: int
    state: str  # resetting | ready


def machine_for(env: Env, db: psycopg.Connection[Any],
                stats: dict[str, int]) -> type[RuleBasedStateMachine]:
    slots = list(env.config.slot_ids)

    def sql(query: str, params: Any = None) -> list[tuple[Any, ...]]:
        cur = db.execute(query, params)
        return cur.fetchall() if cur.description else []

    class LeaseMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            sql("TRUNCATE preview_db_resets, leases, lease_events, waiters RESTART IDENTITY")
            sql("UPDATE slots SET generation = 0, status = 'active', consecutive_failures = 0, "
                   "last_released_at = NULL")
            self.cp = ControlPlane(env.config)
            self.live: dict[str, Held] = {}
            self.generation = dict.fromkeys(slots, 0)
            self.last_slot: dict[str, str] = {}
            self.client: dict[str, Lease] = {}
            self.resets: dict[int, int] = {}
            stats["examples"] += 1

        def teardown(self) -> None:
            self.cp.close()

        def free(self) -> set[str]:
            return set(slots) - {h.slot_id for h in self.live.values()}

        @rule(run=st.sampled_from(RUNS))
        def allocate(self, run: str) -> None:
            """Also the retry of a run whose earlier attempt crashed or expired."""
            stats["steps"] += 1
            free = self.free()
            try:
                lease = self.cp.claim(run, slot_ids=slots, ttl=TTL, strategy="seed",
                                      seed_version="v1", snapshot_version=None)
            except pg_errors.UniqueViolation:
                assert run in self.live, f"{run} was refused a lease it does not hold"
                return
            if lease is None:
                assert not free or run in self.live, f"no slot for {run}, yet {free} are free"
                return
            assert run not in self.live, f"{run} got a second live lease"
            assert lease.slot_id in free, f"{run} got {lease.slot_id}, which is held"
            if self.last_slot.get(run) in free:
                assert lease.slot_id == self.last_slot[run], "a retry did not get its own slot"
            assert lease.generation == self.generation[lease.slot_id] + 1
            self.generation[lease.slot_id] = lease.generation
            self.live[run] = Held(lease.slot_id, lease.lease_id, "resetting")
            self.last_slot[run] = lease.slot_id
            self.client[run] = lease
            self.resets[lease.lease_id] = self.cp.start_reset(
                run_id=run, slot_id=lease.slot_id, db_name="x", strategy="seed",
                seed_version="v1", snapshot_version=None, lease=lease, details={})

        @rule(run=st.sampled_from(RUNS))
        def mark_ready(self, run: str) -> None:
            lease = self.client.get(run)
            if lease is None:
                return
            stats["steps"] += 1
            with self.cp.transaction():
                ready = self.cp.mark_ready(lease, TTL, self.resets[lease.lease_id])
                if ready is not None:
                    self.cp.finish_reset(self.resets[lease.lease_id], ResetStatus.SUCCEEDED, {})
            held = self.live.get(run)
            expected = (held is not None and held.lease_id == lease.lease_id
                        and held.state == "resetting")
            assert (ready is not None) == expected, f"mark_ready({run}) gave {ready}"
            if ready is not None and held is not None:
                held.state = "ready"

        @rule(run=st.sampled_from(RUNS))
        def heartbeat(self, run: str) -> None:
            lease = self.client.get(run)
            if lease is None:
                return
            stats["steps"] += 1
            held = self.live.get(run)
            ok = (held is not None and held.lease_id == lease.lease_id
                  and held.state == "resetting")
            assert (self.cp.heartbeat(lease, TTL) is not None) == ok

        @rule(run=st.sampled_from(RUNS))
        def renew(self, run: str) -> None:
            stats["steps"] += 1
            held = self.live.get(run)
            renewed = self.cp.renew(run, TTL)
            assert (renewed is not None) == (held is not None and held.state == "ready")

        @rule(run=st.sampled_from(RUNS))
        def release(self, run: str) -> None:
            stats["steps"] += 1
            rows = self.cp.release(run)
            assert len(rows) == (1 if run in self.live else 0)
            self.live.pop(run, None)

        @rule(run=st.sampled_from(RUNS))
        def expire(self, run: str) -> None:
            """Time travel past the run's expiry, then the sweep every claim and reap runs."""
            stats["steps"] += 1
            sql(f"UPDATE leases SET expires_at = now() - interval '1s' "
                   f"WHERE run_id = %s AND {LIVE}", (run,))
            with self.cp.transaction():
                ended = self.cp.expire()
            assert len(ended) == (1 if run in self.live else 0)
            self.live.pop(run, None)

        @rule(run=st.sampled_from(RUNS))
        def crash(self, run: str) -> None:
            """The client dies: its lease object is gone, the lease stays until it expires."""
            stats["steps"] += 1
            self.client.pop(run, None)

        @invariant()
        def one_live_lease_per_slot_and_run(self) -> None:
            assert sql(f"SELECT slot_id FROM leases WHERE {LIVE} GROUP BY slot_id "
                          "HAVING count(*) > 1") == []
            assert sql(f"SELECT run_id FROM leases WHERE {LIVE} GROUP BY run_id "
                          "HAVING count(*) > 1") == []

        @invariant()
        def generations_strictly_increase(self) -> None:
            bad = sql("SELECT slot_id FROM (SELECT slot_id, generation, lag(generation) OVER "
                         "(PARTITION BY slot_id ORDER BY lease_id) AS before FROM leases) g "
                         "WHERE generation <= before")
            assert bad == [], f"generation went down or repeated on {bad}"
            current = dict(sql("SELECT slot_id, generation FROM slots"))
            assert current == self.generation

        @invariant()
        def database_agrees_with_the_model(self) -> None:
            rows = sql(f"SELECT run_id, slot_id, lease_id, state::text FROM leases "
                          f"WHERE {LIVE}")
            assert {r: (s, i, st_) for r, s, i, st_ in rows} == {
                r: (h.slot_id, h.lease_id, h.state) for r, h in self.live.items()}

        @invariant()
        def stale_leases_are_fenced_out(self) -> None:
            for run, lease in self.client.items():
                held = self.live.get(run)
                if held is None or held.lease_id != lease.lease_id:
                    assert not self.cp.still_holds(lease), f"{run}'s old lease still holds"

        @invariant()
        def no_reset_left_running_without_its_lease(self) -> None:
            assert sql("SELECT r.id FROM preview_db_resets r JOIN leases l USING (lease_id) "
                          "WHERE r.reset_status = 'running' AND l.state <> 'resetting'") == []

    return LeaseMachine


def test_lease_state_machine(make_env: Callable[..., Env]) -> None:
    env = make_env(slots=2)  # fewer slots than runs: slots change hands often
    stats = {"examples": 0, "steps": 0}
    examples, steps = size(25, 300), size(40, 60)
    with env.connect(env.config.control_plane.dbname) as db:  # one connection for the checks
        run_state_machine_as_test(machine_for(env, db, stats), settings=settings(
            max_examples=examples, stateful_step_count=steps, deadline=None))
    test = "stateful lease model (hypothesis)"
    record(test, "examples / steps run", f"{stats['examples']} / {stats['steps']}",
           f"{examples} x <= {steps} steps")
    record(test, "invariant failures", 0, "0")
    verdict(test)
