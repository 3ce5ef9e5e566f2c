"""Property at the server: whatever run ids are thrown at ``allocate``, the only databases the
server is ever asked to create, drop or rename are the slot table's and the tool's own working
names (checked from the server's DDL log, not from what the tool says it did)."""

from __future__ import annotations

import re
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from preview_slots.config import RUN_ID_RE
from preview_slots.errors import NotAllowedDatabase, UsageError
from preview_slots.local.pg import LocalPostgres
from preview_slots.pgadmin import Guard
from preview_slots.service import SourceRequest, allocate, release
from tests.conftest import Env
from tests.reliability.conftest import size
from tests.reliability.figures import record, verdict
from tests.reliability.harness import add_seeds, wait_until

DDL = re.compile(r'(?:CREATE|DROP|ALTER|COMMENT ON) DATABASE (?:IF EXISTS )?"?(?P<a>[^"\s;]+)"?'
                 r'(?: RENAME TO "?(?P<b>[^"\s;]+)"?)?')


def test_property_allocations_touch_only_the_slot_table(make_env: Callable[..., Env],
                                                        pg: LocalPostgres) -> None:
    env = make_env(slots=2)
    add_seeds(env)
    guard = Guard(env.config)
    outcomes = {"allocated": 0, "refused": 0}
    env.query("postgres", "ALTER SYSTEM SET log_statement = 'ddl'")
    env.query("postgres", "SELECT pg_reload_conf()")
    wait_until(lambda: env.query("postgres", "SHOW log_statement") == [("ddl",)], 10,
               "the server to log DDL")
    offset = pg.logfile.stat().st_size
    run_ids = st.one_of(st.from_regex(RUN_ID_RE, fullmatch=True), st.text(max_size=30),
                        st.sampled_from(["postgres", "-rf", "x; DROP DATABASE postgres", "a b",
                                         env.config.slots[0].database, "template1"]))

    @settings(max_examples=size(10, 60), deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(run_ids)
    def allocate_any(run_id: str) -> None:
        try:
            allocate(env.config, run_id, SourceRequest("seed", "tiny"))
        except UsageError:
            assert not RUN_ID_RE.fullmatch(run_id)
            outcomes["refused"] += 1
            return
        outcomes["allocated"] += 1
        release(env.config, run_id)

    try:
        allocate_any()
    finally:
        env.query("postgres", "ALTER SYSTEM RESET log_statement")
        env.query("postgres", "SELECT pg_reload_conf()")
    log = pg.logfile.read_bytes()[offset:].decode(errors="replace")
    touched = {name for m in DDL.finditer(log) for name in m.groups() if name}
    outside = sorted(n for n in touched if not _admitted(guard, n))
    test = "property: random run ids vs the slot table (server DDL log)"
    record(test, "allocations / refused run ids", f"{outcomes['allocated']} / "
           f"{outcomes['refused']}", "both > 0", all(outcomes.values()))
    record(test, "databases named in DDL", len(touched), "> 0", bool(touched))
    record(test, "outside the slot table and own names", len(outside), "0", not outside)
    verdict(test, outside[:5])


def _admitted(guard: Guard, name: str) -> bool:
    try:
        guard.check(name)
    except NotAllowedDatabase:
        return False
    return True
