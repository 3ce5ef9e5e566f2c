"""Allocation end to end against a real PostgreSQL, through the CLI as CI calls it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from tests.conftest import Env

SEED_COLUMNS = {"run_id", "slot_id", "db_name", "strategy", "seed_version", "snapshot_version",
                "reset_status", "created_at", "started_at", "finished_at", "updated_at", "details"}
JSON_KEYS = {"run_id", "slot_id", "url", "db_name", "strategy", "seed_version",
             "snapshot_version", "reset_id", "reset_status", "lease_expires_at"}


def allocate(env: Env, run_id: str, *extra: str) -> dict[str, Any]:
    result = env.cli("allocate", "--run-id", run_id, "--strategy", "seed", "--seed-version", "v1",
                     "--json", *extra)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_allocate_resets_and_records_provenance(env: Env) -> None:
    data = allocate(env, "run-1")
    assert data.keys() >= JSON_KEYS
    assert data["reset_status"] == "succeeded"
    assert data["slot_id"] in env.config.slot_ids
    slot = env.config.slot(data["slot_id"])
    assert data["db_name"] == slot.database
    assert data["url"] == f"http://{slot.host}:8080"
    counts = env.query(slot.database, "SELECT (SELECT count(*) FROM customers), "
                       "(SELECT count(*) FROM orders), (SELECT count(*) FROM order_items)")
    assert counts[0][0] == 100 and counts[0][1] == 250 and counts[0][2] > 100
    rows = env.cp("SELECT * FROM preview_db_resets WHERE id = %s", (data["reset_id"],))
    assert len(rows) == 1
    cols = {r[0] for r in env.cp("SELECT column_name FROM information_schema.columns "
                                 "WHERE table_name = 'preview_db_resets'")}
    assert cols >= SEED_COLUMNS
    row = env.cp("SELECT run_id, slot_id, db_name, strategy, seed_version, snapshot_version, "
                 "reset_status, finished_at IS NOT NULL, details FROM preview_db_resets "
                 "WHERE id = %s", (data["reset_id"],))[0]
    assert row[:8] == ("run-1", slot.id, slot.database, "seed", "v1", None, "succeeded", True)
    details = row[8]
    assert len(details["checksum"]) == 64
    assert details["phases"].keys() >= {"template", "clone", "swap", "prepare"}
    assert details["template_built"] is True and details["clone"] == "template"
    assert details["server_version"] and details["tool_version"] and details["host"]
    # of the tool's working databases only the template remains (no build, no old copy)
    own = [d for d in env.databases() if d.startswith("c" + env.tag + "_")]
    assert own == [details["template"]]


def test_same_run_gets_its_slot_back_without_a_second_reset(env: Env) -> None:
    first = allocate(env, "run-1")
    env.query(first["db_name"], "INSERT INTO customers VALUES (1000, 'x@y', 'marker', now())")
    again = allocate(env, "run-1")
    assert again["slot_id"] == first["slot_id"]
    assert again["reset_id"] == first["reset_id"]
    assert again["reused"] is True
    # the data written in between is still there: no reset happened
    assert env.query(first["db_name"], "SELECT count(*) FROM customers WHERE id = 1000") == [(1,)]
    assert env.cp("SELECT count(*) FROM preview_db_resets") == [(1,)]


def test_release_is_idempotent_and_frees_the_slot(make_env: Callable[..., Env]) -> None:
    env = make_env(slots=1)
    allocate(env, "a")
    busy = env.cli("allocate", "--run-id", "b", "--strategy", "seed", "--seed-version", "v1")
    assert busy.returncode == 3
    assert "held by a" in busy.stderr
    assert env.cli("release", "--run-id", "a").returncode == 0
    second = env.cli("release", "--run-id", "a")
    assert second.returncode == 0 and "nothing to do" in second.stdout
    assert allocate(env, "b")["slot_id"] == env.config.slots[0].id


def test_wait_times_out_with_exit_3_naming_holders(make_env: Callable[..., Env]) -> None:
    env = make_env(slots=1)
    allocate(env, "holder")
    started = time.monotonic()
    result = env.cli("allocate", "--run-id", "late", "--strategy", "seed", "--seed-version", "v1",
                     "--wait", "2s")
    took = time.monotonic() - started
    assert result.returncode == 3
    assert "holder" in result.stderr and "expires in" in result.stderr
    assert result.stderr.count("\n") <= 2  # one line (plus the waiting notice)
    assert took >= 2


def test_wait_picks_up_a_released_slot(make_env: Callable[..., Env]) -> None:
    env = make_env(slots=1)
    allocate(env, "holder")
    waiter = env.popen("allocate", "--run-id", "waiter", "--strategy", "seed", "--seed-version",
                       "v1", "--wait", "60s", "--json")
    time.sleep(1.5)
    assert waiter.poll() is None
    assert env.cli("release", "--run-id", "holder").returncode == 0
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    assert json.loads(out)["run_id"] == "waiter"


def test_seed_content_is_identical_across_slots_and_resets(env: Env) -> None:
    a = allocate(env, "run-a")
    b = allocate(env, "run-b")
    assert a["slot_id"] != b["slot_id"]
    sum_a, sum_b = env.checksum(a["db_name"]), env.checksum(b["db_name"])
    assert sum_a == sum_b and "customers:100" in sum_a
    # a second reset of the first slot gives the same content again
    result = env.cli("db", "reset-and-seed", "--slot", a["slot_id"], "--run-id", "run-a",
                     "--strategy", "seed", "--seed-version", "v1")
    assert result.returncode == 0, result.stderr
    assert env.checksum(a["db_name"]) == sum_a


def test_snapshot_roundtrip_gives_the_same_data(env: Env) -> None:
    a = allocate(env, "run-a")
    env.query(a["db_name"], "UPDATE products SET title = title || ' (snap)' WHERE id <= 3")
    made = env.cli("snapshot", "create", "--slot", a["slot_id"], "--version", "s1")
    assert made.returncode == 0, made.stderr
    expected = env.checksum(a["db_name"])
    result = env.cli("allocate", "--run-id", "run-b", "--strategy", "snapshot",
                     "--snapshot-version", "s1", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["snapshot_version"] == "s1" and data["seed_version"] is None
    assert env.checksum(data["db_name"]) == expected
    again = env.cli("snapshot", "create", "--slot", a["slot_id"], "--version", "s1")
    assert again.returncode == 2 and "immutable" in again.stderr


def test_c05_four_runs_three_slots_same_instant(env: Env) -> None:
    procs = {run: env.popen("allocate", "--run-id", run, "--strategy", "seed", "--seed-version",
                            "v1", "--json") for run in ("A", "B", "C", "D")}
    dup = env.popen("allocate", "--run-id", "A", "--strategy", "seed", "--seed-version", "v1",
                    "--json")
    empty = env.cli("allocate", "--run-id", "", "--strategy", "seed", "--seed-version", "v1")
    assert empty.returncode == 2 and "run-id" in empty.stderr
    results = {run: (p.wait(120), *p.communicate()) for run, p in procs.items()}
    dup_code = dup.wait(120)
    dup_out, dup_err = dup.communicate()
    served = {run: json.loads(out) for run, (code, out, _) in results.items() if code == 0}
    refused = [run for run, (code, _, _) in results.items() if code == 3]
    assert len(served) == 3 and len(refused) == 1, results
    assert len({d["slot_id"] for d in served.values()}) == 3
    _, _, refused_err = results[refused[0]]
    assert all(run in refused_err for run in served)
    resets_of_a = env.cp("SELECT count(*) FROM preview_db_resets WHERE run_id = 'A'")
    if "A" in served or dup_code == 0:  # run A got a slot (through either of its processes)
        assert dup_code == 0, dup_err
        dup_data = json.loads(dup_out)
        if "A" in served:
            assert dup_data["slot_id"] == served["A"]["slot_id"]
            assert dup_data["reset_id"] == served["A"]["reset_id"]
        assert resets_of_a == [(1,)]
    else:  # B, C and D took the three slots first: both of A's processes are refused alike
        assert dup_code == 3 and "no slot free for run A" in dup_err, dup_err
        assert resets_of_a == [(0,)]
    live = env.cp("SELECT slot_id, count(*) FROM leases WHERE state IN ('resetting', 'ready') "
                  "GROUP BY 1")
    assert all(n == 1 for _, n in live)


def test_constraint_makes_a_second_live_holder_impossible(env: Env) -> None:
    import psycopg

    data = allocate(env, "A")
    for sql in (
        "INSERT INTO leases (slot_id, run_id, generation, state, owner, expires_at) "
        "VALUES (%s, 'B', 999, 'ready', 'raw', now() + interval '1h')",
        "INSERT INTO leases (slot_id, run_id, generation, state, owner, expires_at) "
        "SELECT slot_id, 'A', 998, 'ready', 'raw', now() + interval '1h' FROM slots "
        "WHERE slot_id <> %s LIMIT 1",
    ):
        try:
            env.cp(sql, (data["slot_id"],))
        except psycopg.errors.UniqueViolation:
            continue
        raise AssertionError("the database accepted a second live lease")


def test_status_and_history_json(env: Env) -> None:
    data = allocate(env, "run-1")
    status = json.loads(env.cli("status", "--json").stdout)
    mine = next(s for s in status if s["slot_id"] == data["slot_id"])
    assert mine["state"] == "ready" and mine["run_id"] == "run-1"
    assert mine["expires_in_seconds"] > 7000
    history = json.loads(env.cli("history", "--slot", data["slot_id"], "--json").stdout)
    assert history[0]["id"] == data["reset_id"]
    text = env.cli("status").stdout
    assert "run-1" in text and "free" in text


def test_renew_extends_and_refuses_non_holders(env: Env) -> None:
    allocate(env, "run-1", "--ttl", "1m")
    before = env.cp("SELECT expires_at FROM leases WHERE run_id = 'run-1' AND state = 'ready'")
    renewed = env.cli("renew", "--run-id", "run-1", "--ttl", "3h")
    assert renewed.returncode == 0, renewed.stderr
    after = env.cp("SELECT expires_at FROM leases WHERE run_id = 'run-1' AND state = 'ready'")
    assert after[0][0] > before[0][0]
    shorter = env.cli("renew", "--run-id", "run-1", "--ttl", "30m")  # never shortens
    assert shorter.returncode == 0, shorter.stderr
    assert env.cp("SELECT expires_at FROM leases WHERE run_id = 'run-1' AND state = 'ready'") \
        == after
    other = env.cli("renew", "--run-id", "nobody")
    assert other.returncode == 4


def test_dry_run_changes_nothing(env: Env) -> None:
    before_dbs = env.databases()
    before_cp = env.cp("SELECT count(*), coalesce(sum(generation), 0) FROM slots")
    result = env.cli("allocate", "--run-id", "dry", "--strategy", "seed", "--seed-version", "v1",
                     "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "nothing was changed" in result.stdout and "rename" in result.stdout
    assert env.databases() == before_dbs
    assert env.cp("SELECT count(*), coalesce(sum(generation), 0) FROM slots") == before_cp
    assert env.cp("SELECT count(*) FROM leases") == [(0,)]
    assert env.cp("SELECT count(*) FROM preview_db_resets") == [(0,)]


def test_init_is_idempotent_and_safe_concurrently(make_env: Callable[..., Env]) -> None:
    env = make_env(init=False)
    procs = [env.popen("init") for _ in range(4)]
    codes = [p.wait(60) for p in procs]
    assert codes == [0, 0, 0, 0], [p.communicate() for p in procs]
    again = env.cli("init")
    assert again.returncode == 0 and "already up to date" in again.stdout
    from preview_slots.controlplane import migrations

    assert env.cp("SELECT count(*) FROM preview_slots_migrations") == [(len(migrations()),)]


def test_github_output_lines(env: Env, tmp_path: Any) -> None:
    out = tmp_path / "gh_output"
    out.write_text("previous=1\n")
    result = env.cli("allocate", "--run-id", "gh", "--strategy", "seed", "--seed-version", "v1",
                     "--github-output", env={"GITHUB_OUTPUT": str(out)})
    assert result.returncode == 0, result.stderr
    lines = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert lines["previous"] == "1"
    assert lines["slot"] in env.config.slot_ids and lines["db_name"].endswith("_app_preview_1")
    assert lines["url"].startswith("http://") and int(lines["reset_id"]) > 0
    missing = env.cli("allocate", "--run-id", "gh2", "--strategy", "seed", "--seed-version", "v1",
                      "--github-output", env={"GITHUB_OUTPUT": ""})
    assert missing.returncode == 2 and "GITHUB_OUTPUT" in missing.stderr
    assert env.cp("SELECT count(*) FROM leases WHERE run_id = 'gh2'") == [(0,)]


def test_sigterm_mid_reset_gives_the_slot_back_at_once(make_env: Callable[..., Env]) -> None:
    import signal

    env = make_env(slots=1)
    proc = env.popen("allocate", "--run-id", "cancelled", "--strategy", "seed", "--seed-version",
                     "v1", env={"PREVIEW_SLOTS_FAILPOINT": "before_swap:sleep(30)"})
    deadline = time.monotonic() + 60
    while not env.cp("SELECT 1 FROM preview_db_resets WHERE run_id = 'cancelled'"):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted by SIGTERM" in err
    assert env.cp("SELECT reset_status FROM preview_db_resets WHERE run_id = 'cancelled'") \
        == [("failed",)]
    assert env.cp("SELECT state::text, status::text, consecutive_failures FROM leases "
                  "JOIN slots USING (slot_id) WHERE run_id = 'cancelled'") \
        == [("released", "active", 0)]
    assert not any(d.startswith(f"c{env.tag}_build") for d in env.databases())
    assert allocate(env, "next")["reset_status"] == "succeeded"  # no TTL to wait for
