"""Bad input: one clear line on stderr, the documented exit code, and nothing changed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Env


def snapshot_of_world(env: Env) -> tuple[object, ...]:
    """Everything a bad command must leave as it was: databases, their content, the control plane."""
    dbs = sorted(d for d in env.databases() if env.tag in d)
    contents = tuple(env.checksum(d) for d in dbs if d.startswith(env.tag + "_app"))
    cp = (env.cp("SELECT slot_id, generation, status FROM slots ORDER BY 1"),
          env.cp("SELECT lease_id, state FROM leases ORDER BY 1"),
          env.cp("SELECT id, reset_status FROM preview_db_resets ORDER BY 1"))
    return (dbs, contents, cp)


def one_line_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("preview-slots: error: ")
    assert "Traceback" not in stderr
    return lines[0]


CASES: list[tuple[str, list[str], int, str]] = [
    ("unknown slot", ["db", "reset", "--slot", "nope"], 2, "unknown slot 'nope'"),
    ("missing seed version", ["allocate", "--run-id", "r", "--strategy", "seed",
                              "--seed-version", "v9"], 2, "seed version 'v9' not found"),
    ("empty seed version", ["allocate", "--run-id", "r", "--strategy", "seed",
                            "--seed-version", "empty"], 2, "is empty"),
    ("missing snapshot", ["allocate", "--run-id", "r", "--strategy", "snapshot",
                          "--snapshot-version", "nope"], 2, "snapshot version 'nope' not found"),
    ("not an archive", ["allocate", "--run-id", "r", "--strategy", "snapshot",
                        "--snapshot-version", "junk"], 2, "cannot be read"),
    ("newer pg_dump", ["allocate", "--run-id", "r", "--strategy", "snapshot",
                       "--snapshot-version", "future"], 2, "unsupported version"),
    ("empty run id", ["allocate", "--run-id", "", "--strategy", "seed", "--seed-version", "v1"],
     2, "must not be empty"),
    ("over-long run id", ["allocate", "--run-id", "r" * 129, "--strategy", "seed",
                          "--seed-version", "v1"], 2, "not allowed"),
    ("shell-special run id", ["allocate", "--run-id", 'x"; rm -rf ~ #', "--strategy", "seed",
                              "--seed-version", "v1"], 2, "not allowed"),
    ("seed flag with snapshot strategy", ["allocate", "--run-id", "r", "--strategy", "snapshot",
                                          "--seed-version", "v1"], 2, "--snapshot-version"),
    ("path in a version", ["allocate", "--run-id", "r", "--strategy", "seed",
                           "--seed-version", "../v1"], 2, "not allowed"),
    ("psql meta-command in a seed", ["allocate", "--run-id", "r", "--strategy", "seed",
                                     "--seed-version", "meta"], 2, "meta-commands"),
    ("COMMIT in a seed", ["allocate", "--run-id", "r", "--strategy", "seed",
                          "--seed-version", "txn"], 2, "ends the seed's transaction (COMMIT at line 2)"),
    ("bad duration", ["allocate", "--run-id", "r", "--strategy", "seed", "--seed-version", "v1",
                      "--wait", "soon"], 2, "--wait"),
    ("zero ttl", ["allocate", "--run-id", "r", "--strategy", "seed", "--seed-version", "v1",
                  "--ttl", "0"], 2, "--ttl: must be more than zero"),
    ("zero ttl on renew", ["renew", "--run-id", "r", "--ttl", "0s"], 2, "must be more than zero"),
    ("zero health timeout", ["health", "--timeout", "0"], 2, "--timeout: must be more than zero"),
    ("argparse: a missing flag", ["allocate", "--run-id", "r"], 2,
     "required: --strategy (see `preview-slots allocate --help`)"),
    ("argparse: a bad choice", ["health", "--skip", "bogus"], 2, "invalid choice: 'bogus'"),
    ("argparse: an unknown command", ["bogus"], 2, "invalid choice: 'bogus'"),
    ("prewarm without a version", ["prewarm"], 2,
     "one of the arguments --seed-version --snapshot-version is required"),
]


@pytest.mark.parametrize(("name", "args", "code", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(loaded: Env, name: str, args: list[str],
                                                  code: int, words: str) -> None:
    env = loaded
    (env.config.seeds_dir / "empty").mkdir(exist_ok=True)
    meta = env.config.seeds_dir / "meta"
    meta.mkdir(exist_ok=True)
    (meta / "001.sql").write_text("CREATE TABLE a (i int);\n\\c postgres\nDROP DATABASE x;\n")
    txn = env.config.seeds_dir / "txn"
    txn.mkdir(exist_ok=True)
    (txn / "001.sql").write_text("CREATE TABLE a (i int);\nCOMMIT;\nCREATE DATABASE x;\n")
    snaps = env.config.snapshots_dir
    snaps.mkdir(parents=True, exist_ok=True)
    (snaps / "junk.dump").write_text("this is not a pg_dump archive\n")
    if not (snaps / "future.dump").exists():
        made = env.cli("snapshot", "create", "--slot", env.config.slots[0].id, "--version", "ok")
        assert made.returncode == 0, made.stderr
        data = bytearray((snaps / "ok.dump").read_bytes())
        assert data[:5] == b"PGDMP"
        data[5] = 9  # a format major version no pg_restore of ours knows: "made by a newer pg_dump"
        (snaps / "future.dump").write_bytes(bytes(data))
    before = snapshot_of_world(env)
    result = env.cli(*args)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert words in one_line_error(result.stderr)
    assert snapshot_of_world(env) == before


def test_control_plane_unreachable(make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env()
    text = env.path.read_text().replace(f"127.0.0.1:{env.pg.port}/{env.tag}_cp",
                                        f"127.0.0.1:1/{env.tag}_cp")
    broken = tmp_path / "broken.toml"
    broken.write_text(text)
    before = snapshot_of_world(env)
    result = env.cli("--config", str(broken), "allocate", "--run-id", "r", "--strategy", "seed",
                     "--seed-version", "v1")
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    assert "cannot connect to the control plane" in line and "127.0.0.1:1" in line
    assert env.pg.password not in result.stderr + result.stdout
    assert snapshot_of_world(env) == before


def test_schema_missing_says_run_init(make_env: Callable[..., Env]) -> None:
    env = make_env(init=False)
    env.query("postgres", f'CREATE DATABASE "{env.tag}_cp"')
    result = env.cli("status")
    assert result.returncode == 2
    assert "preview-slots init" in one_line_error(result.stderr)


@pytest.mark.parametrize(("text", "code", "words"), [
    ("[lease]\nttl = 'forever'\n", 2, "lease.ttl"),
    ("[lease]\nttll = '1h'\n", 2, "unknown key"),
    ("[[slots]]\nid = 'p1'\nport = 3101\ndatabase = 'postgres'\n", 4, "system database"),
    ("[[slots]]\nid = 'p1'\nport = 3101\ndatabase = 'Robert\"); DROP'\n", 2, "must match"),
])
def test_bad_config_files(tmp_path: Path, env: Env, text: str, code: int, words: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    before = snapshot_of_world(env)
    result = env.cli("--config", str(path), "db", "reset", "--slot", "p1")
    assert result.returncode == code
    line = one_line_error(result.stderr)
    assert str(path) in line and words in line
    assert snapshot_of_world(env) == before


def test_slot_leased_to_another_run_is_refused(env: Env) -> None:
    data = json.loads(env.cli("allocate", "--run-id", "owner", "--strategy", "seed",
                              "--seed-version", "v1", "--json").stdout)
    env.query(data["db_name"], "INSERT INTO customers VALUES (999, 'keep@me', 'keep', now())")
    before = env.checksum(data["db_name"])
    for args in (["db", "reset", "--slot", data["slot_id"]],
                 ["db", "seed", "--slot", data["slot_id"], "--seed-version", "v1"],
                 ["db", "reset-and-seed", "--slot", data["slot_id"], "--run-id", "intruder",
                  "--strategy", "seed", "--seed-version", "v1"]):
        result = env.cli(*args)
        assert result.returncode == 4, result.stderr
        assert "leased to run owner" in one_line_error(result.stderr)
    assert env.checksum(data["db_name"]) == before
    # the holder itself may act
    ok = env.cli("db", "reset", "--slot", data["slot_id"], "--run-id", "owner")
    assert ok.returncode == 0, ok.stderr
    assert env.query(data["db_name"], "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") \
        == [(0,)]


def test_unrelated_databases_are_never_touched(env: Env) -> None:
    env.query("postgres", f'CREATE DATABASE "{env.tag}_precious"')
    for args in (["allocate", "--run-id", "a", "--strategy", "seed", "--seed-version", "v1"],
                 ["db", "reset", "--slot", env.config.slots[1].id]):
        assert env.cli(*args).returncode == 0
    assert f"{env.tag}_precious" in env.databases()


def test_library_refuses_a_hold_that_has_already_expired(env: Env) -> None:
    """The library says it too, not only the command line (bench and tests call it directly)."""
    from preview_slots.errors import UsageError
    from preview_slots.service import SourceRequest, allocate

    before = snapshot_of_world(env)
    with pytest.raises(UsageError, match="--ttl must be positive"):
        allocate(env.config, "r", SourceRequest("seed", "v1"), ttl=0)
    assert snapshot_of_world(env) == before
