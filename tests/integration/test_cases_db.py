"""Field cases about databases: C-01, C-03, C-04 (see docs/field-cases in the README)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import Env


def test_c01_reset_while_clients_keep_reconnecting(loaded: Env) -> None:
    env = loaded
    slot = env.config.slots[0]
    stop = threading.Event()
    seen: list[int] = []

    def reconnect_every_10ms() -> None:
        while not stop.is_set():
            try:
                with psycopg.connect(env.pg.url(slot.database), connect_timeout=2) as conn:
                    n = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                                     ).fetchone()
                    seen.append(n[0] if n else -1)
            except psycopg.Error:
                pass
            time.sleep(0.01)

    client = threading.Thread(target=reconnect_every_10ms, daemon=True)
    client.start()
    interactive = psycopg.connect(env.pg.url(slot.database))  # an open transaction, idle
    interactive.execute("SELECT count(*) FROM customers")
    try:
        result = env.cli("db", "reset", "--slot", slot.id)
        assert result.returncode == 0, result.stderr
        assert "succeeded" in result.stdout
        time.sleep(0.3)
    finally:
        stop.set()
        client.join(5)
    with pytest.raises(psycopg.OperationalError):
        interactive.execute("SELECT 1")  # its session was ended by the reset
    # the reset database is the new, empty one, and clients reconnect to it
    assert env.query(slot.database, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") \
        == [(0,)]
    assert 4 in seen and seen[-1] == 0
    row = env.cp("SELECT reset_status, strategy FROM preview_db_resets ORDER BY id DESC LIMIT 1")
    assert row == [("succeeded", "empty")]


def _seed(env: Env, version: str, files: dict[str, str]) -> None:
    folder = env.config.seeds_dir / version
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def test_c04_a_seed_that_fails_half_way(loaded: Env) -> None:
    env = loaded
    good = "\n".join(f"INSERT INTO customers VALUES ({n}, 'c{n}@x', 'c', now());"
                     for n in range(1, 40))
    _seed(env, "v3", {
        "010_schema.sql": (env.config.seeds_dir / "v1" / "001_schema.sql").read_text(),
        "020_orders.sql": good + "\nINSERT INTO orders VALUES (1, 4242, now(), 'paid');\n",
    })
    slot = env.config.slots[0]
    before = env.checksum(slot.database)
    result = env.cli("allocate", "--run-id", "r3", "--strategy", "seed", "--seed-version", "v3")
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert "020_orders.sql line 40" in line and "SQLSTATE 23503" in line, line
    # nothing partial: the slot database still has what it had; no half-built copy remains
    assert env.checksum(slot.database) == before
    own = [d for d in env.databases() if d.startswith(f"c{env.tag}_")]
    assert all("_tpl_seed_v1_" in d and not d.endswith("_b") for d in own), own
    row = env.cp("SELECT reset_status, details FROM preview_db_resets WHERE run_id = 'r3'")[0]
    assert row[0] == "failed"
    assert "020_orders.sql line 40" in row[1]["error"] and row[1]["sqlstate"] == "23503"
    # the slot is not handed out as ready: the run holds no lease
    assert env.cp("SELECT count(*) FROM leases WHERE run_id = 'r3' AND state IN "
                  "('resetting', 'ready')") == [(0,)]
    status = json.loads(env.cli("status", "--json").stdout)
    assert all(s["run_id"] != "r3" for s in status)


def test_c04_a_restore_that_fails_part_way(loaded: Env) -> None:
    env = loaded
    slot = env.config.slots[0]
    assert env.cli("snapshot", "create", "--slot", slot.id, "--version", "full").returncode == 0
    dump = env.config.snapshots_dir / "full.dump"
    data = dump.read_bytes()
    (env.config.snapshots_dir / "cut.dump").write_bytes(data[: len(data) - 2000])
    env.query(slot.database, "INSERT INTO customers VALUES (777, 'still@here', 'x', now())")
    before = env.checksum(slot.database)
    result = env.cli("allocate", "--run-id", "rc", "--strategy", "snapshot",
                     "--snapshot-version", "cut")
    assert result.returncode in (1, 2), result.stderr
    assert env.checksum(slot.database) == before
    rows = env.cp("SELECT reset_status FROM preview_db_resets WHERE run_id = 'rc'")
    assert rows in ([], [("failed",)])


@pytest.fixture
def fake_extension(env: Env) -> Iterator[Path]:
    """An extension installed only while the snapshot is made (then removed, as on another host)."""
    share = env.pg.bin_dir.parent / "share" / "postgresql" / "extension"
    if not share.is_dir():
        share = env.pg.bin_dir.parent / "share" / "extension"
    control = share / "pslots_fake_ext.control"
    script = share / "pslots_fake_ext--1.0.sql"
    control.write_text("default_version = '1.0'\nrelocatable = true\ncomment = 'test only'\n")
    script.write_text("CREATE FUNCTION pslots_fake_fn() RETURNS int LANGUAGE sql AS 'SELECT 1';\n")
    yield control
    control.unlink(missing_ok=True)
    script.unlink(missing_ok=True)


def _foreign_snapshot(env: Env, version: str, *, extension: str | None) -> None:
    """A snapshot made elsewhere: objects owned by role app_prod, which does not exist here."""
    slot = env.config.slots[1]
    env.query("postgres", f'DROP DATABASE IF EXISTS "{slot.database}"')
    env.query("postgres", f'CREATE DATABASE "{slot.database}"')
    env.query("postgres", "DROP ROLE IF EXISTS app_prod")
    env.query("postgres", "CREATE ROLE app_prod")
    with env.connect(slot.database) as conn:
        if extension:
            conn.execute(f"CREATE EXTENSION {extension}")
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO accounts SELECT n, 'a' || n FROM generate_series(1, 50) n")
        conn.execute("ALTER TABLE accounts OWNER TO app_prod")
        conn.execute("GRANT SELECT ON accounts TO app_prod")
    made = env.cli("snapshot", "create", "--slot", slot.id, "--version", version)
    assert made.returncode == 0, made.stderr
    env.query("postgres", f'DROP DATABASE "{slot.database}"')
    env.query("postgres", "DROP ROLE app_prod")


def test_c03_snapshot_with_a_foreign_owner_restores_owned_by_us(env: Env) -> None:
    _foreign_snapshot(env, "prod1", extension=None)
    result = env.cli("allocate", "--run-id", "r", "--strategy", "snapshot",
                     "--snapshot-version", "prod1", "--json")
    assert result.returncode == 0, result.stderr
    db = json.loads(result.stdout)["db_name"]
    assert env.query(db, "SELECT count(*), pg_get_userbyid((SELECT relowner FROM pg_class "
                     "WHERE relname = 'accounts')) FROM accounts") == [(50, "postgres")]


def test_c03_snapshot_needing_a_missing_extension_fails_up_front(
        env: Env, fake_extension: Path) -> None:
    _foreign_snapshot(env, "prod2", extension="pslots_fake_ext")
    fake_extension.unlink()  # the extension exists where the snapshot was made, not here
    first = env.cli("allocate", "--run-id", "keep", "--strategy", "seed", "--seed-version", "v1",
                    "--json")
    assert first.returncode == 0
    before = {d: env.checksum(d) for d in (s.database for s in env.config.slots)
              if d in env.databases()}
    result = env.cli("allocate", "--run-id", "r", "--strategy", "snapshot",
                     "--snapshot-version", "prod2")
    assert result.returncode == 2
    assert "pslots_fake_ext" in result.stderr and "extension" in result.stderr
    assert {d: env.checksum(d) for d in before} == before
    assert env.cp("SELECT count(*) FROM preview_db_resets WHERE run_id = 'r'") == [(0,)]


def test_seed_with_copy_from_stdin_works(make_env: Callable[..., Env]) -> None:
    env = make_env()
    _seed(env, "dump", {"001.sql": (
        "CREATE TABLE t (id int, note text);\n"
        "COPY t (id, note) FROM stdin;\n1\tone\n2\ttwo\n\\.\n"
        "SELECT setval(pg_get_serial_sequence('t', 'id'), 1) WHERE false;\n")})
    result = env.cli("allocate", "--run-id", "r", "--strategy", "seed", "--seed-version", "dump",
                     "--json")
    assert result.returncode == 0, result.stderr
    assert env.query(json.loads(result.stdout)["db_name"], "SELECT count(*) FROM t") == [(2,)]


def test_a_bad_seed_does_not_quarantine_the_pool(env: Env) -> None:
    _seed(env, "bad", {"001.sql": "CREATE TABLE t (i int);\nSELECT 1 / 0;\n"})
    for n in range(4):
        result = env.cli("allocate", "--run-id", f"pr-{n}", "--strategy", "seed",
                         "--seed-version", "bad")
        assert result.returncode == 1 and "division by zero" in result.stderr
        assert "quarantined" not in result.stderr
    assert env.cp("SELECT count(*) FROM slots WHERE status = 'quarantined'") == [(0,)]
    good = env.cli("allocate", "--run-id", "innocent", "--strategy", "seed", "--seed-version", "v1")
    assert good.returncode == 0, good.stderr


def test_all_slots_quarantined_is_refused_at_once(make_env: Callable[..., Env]) -> None:
    env = make_env(slots=2)
    env.cp("UPDATE slots SET status = 'quarantined', consecutive_failures = 3")
    started = time.monotonic()
    result = env.cli("allocate", "--run-id", "r", "--strategy", "seed", "--seed-version", "v1",
                     "--wait", "30s")
    assert result.returncode == 4
    assert "every slot is quarantined" in result.stderr
    assert time.monotonic() - started < 20
    back = env.cli("unquarantine", "--slot", env.config.slots[0].id)
    assert back.returncode == 0 and "is back in the pool" in back.stdout
    again = env.cli("unquarantine", "--slot", env.config.slots[0].id)
    assert again.returncode == 0 and "was not quarantined" in again.stdout
    assert env.cli("allocate", "--run-id", "r", "--strategy", "seed", "--seed-version",
                   "v1").returncode == 0


def test_a_failing_statement_over_several_lines_names_its_line(loaded: Env) -> None:
    """psql names the line a statement ends on; the error names the line of the fault."""
    env = loaded
    _seed(env, "v4", {
        "010_schema.sql": (env.config.seeds_dir / "v1" / "001_schema.sql").read_text(),
        "020_data.sql": "-- header\n\nINSERT INTO customers\n  SELECT *\n  FROM no_such_table\n"
                        "  WHERE true;\n",
    })
    result = env.cli("db", "reset-and-seed", "--slot", env.config.slots[1].id, "--run-id", "r4",
                     "--strategy", "seed", "--seed-version", "v4")
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert "020_data.sql line 5 (in the statement at lines 3-6) (SQLSTATE 42P01)" in line, line
