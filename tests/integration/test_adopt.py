"""A slot database that preview-slots did not make is not replaced unless the caller says so.

Case: the configuration points a slot at a database with content of its own (a typo, another
application's database on the same server). The reset refuses with exit 4 before anything is
renamed or dropped; ``--adopt`` lets it replace the database; an empty database (a fresh host,
``local up``) is taken as it is.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import Env


def make_foreign(env: Env, database: str) -> str:
    env.query("postgres", f'DROP DATABASE IF EXISTS "{database}"')
    env.query("postgres", f'CREATE DATABASE "{database}"')
    with env.connect(database) as conn:
        conn.execute("CREATE TABLE precious (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO precious SELECT n, 'keep ' || n FROM generate_series(1, 25) n")
    return env.checksum(database)


def test_a_foreign_database_is_refused_then_adopted(env: Env) -> None:
    slot = env.config.slots[0]
    before = make_foreign(env, slot.database)
    refused = env.cli("db", "reset-and-seed", "--slot", slot.id, "--run-id", "r1",
                      "--strategy", "seed", "--seed-version", "v1")
    assert refused.returncode == 4, refused.stderr
    lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "was not made by preview-slots" in lines[0]
    assert "holds 1 table(s)" in lines[0] and "--adopt" in lines[0]
    assert env.checksum(slot.database) == before  # untouched
    assert not [d for d in env.databases() if d.startswith(f"c{env.tag}_") and "_tpl_" not in d]
    row = env.cp("SELECT reset_status, details->>'error' FROM preview_db_resets "
                 "WHERE run_id = 'r1'")
    assert row and row[0][0] == "failed" and "not made by preview-slots" in row[0][1]

    adopted = env.cli("db", "reset-and-seed", "--slot", slot.id, "--run-id", "r1",
                      "--strategy", "seed", "--seed-version", "v1", "--adopt")
    assert adopted.returncode == 0, adopted.stderr
    assert env.query(slot.database, "SELECT count(*) FROM customers")[0][0] > 0
    # made by preview-slots now: the next reset needs no --adopt
    again = env.cli("db", "reset-and-seed", "--slot", slot.id, "--run-id", "r1",
                    "--strategy", "seed", "--seed-version", "v1")
    assert again.returncode == 0, again.stderr


def test_allocate_refuses_a_foreign_database_and_an_empty_one_is_taken(
        make_env: Callable[..., Env]) -> None:
    env = make_env(slots=1)
    slot = env.config.slots[0]
    before = make_foreign(env, slot.database)
    refused = env.cli("allocate", "--run-id", "a", "--strategy", "seed", "--seed-version", "v1")
    assert refused.returncode == 4 and "--adopt" in refused.stderr
    assert env.checksum(slot.database) == before
    assert env.cp("SELECT count(*) FROM leases WHERE state IN ('resetting', 'ready')") == [(0,)]

    env.query("postgres", f'DROP DATABASE "{slot.database}"')
    env.query("postgres", f'CREATE DATABASE "{slot.database}"')  # empty, as `local up` makes it
    taken = env.cli("allocate", "--run-id", "a", "--strategy", "seed", "--seed-version", "v1")
    assert taken.returncode == 0, taken.stderr
