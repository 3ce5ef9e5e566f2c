"""A leftover database whose DROP DATABASE was interrupted (PostgreSQL marks it invalid) cannot
be altered, only dropped: the next reset of the slot drops it and succeeds."""

from __future__ import annotations

import json

from tests.conftest import Env


def test_reset_drops_an_invalid_leftover(env: Env) -> None:
    slot = env.config.slots[0]
    old = f"c{env.tag}_old_{slot.id}"
    env.query("postgres", f'CREATE DATABASE "{old}"')
    # what an interrupted DROP DATABASE leaves behind (PostgreSQL 15.4+ / 16)
    env.query("postgres", "UPDATE pg_database SET datconnlimit = -2 WHERE datname = %s", (old,))
    result = env.cli("db", "reset-and-seed", "--slot", slot.id, "--run-id", "r", "--strategy",
                     "seed", "--seed-version", "v1", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["reset_status"] == "succeeded"
    assert old not in env.databases()
