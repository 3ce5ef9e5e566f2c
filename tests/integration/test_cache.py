"""Template cache and warm spares: same data as a direct seed, faster paths, case C-02."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg

from tests.conftest import Env


def allocate(env: Env, run_id: str, *args: str) -> dict[str, Any]:
    result = env.cli("allocate", "--run-id", run_id, "--strategy", "seed", "--seed-version", "v1",
                     "--json", *args)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def details(env: Env, reset_id: int) -> dict[str, Any]:
    row = env.cp("SELECT details FROM preview_db_resets WHERE id = %s", (reset_id,))
    value: dict[str, Any] = row[0][0]
    return value


def test_cache_spare_and_direct_give_identical_data(make_env: Callable[..., Env]) -> None:
    direct = make_env(slots=1, cache="templates = false")
    cached = make_env(slots=1)
    d = allocate(direct, "r")
    assert details(direct, d["reset_id"]).get("clone") is None
    expected = direct.checksum(d["db_name"])

    first = allocate(cached, "r1")  # builds the template, then clones it
    info = details(cached, first["reset_id"])
    assert info["clone"] == "template" and info["template_built"] is True
    assert cached.checksum(first["db_name"]) == expected
    assert cached.cli("release", "--run-id", "r1").returncode == 0

    warm = cached.cli("prewarm", "--seed-version", "v1", "--json")
    assert warm.returncode == 0, warm.stderr
    assert json.loads(warm.stdout)[0]["built"] is True
    listed = json.loads(cached.cli("cache", "list", "--json").stdout)
    assert {r["kind"] for r in listed} == {"template", "spare"}
    assert all(int(r["size_bytes"]) > 0 for r in listed)

    plan = cached.cli("allocate", "--run-id", "r2", "--strategy", "seed", "--seed-version", "v1",
                      "--dry-run")
    assert "rename the warm spare" in plan.stdout, plan.stdout
    second = allocate(cached, "r2")  # takes the spare: a rename, no copy
    info = details(cached, second["reset_id"])
    assert info["clone"] == "spare" and info["spare_built_at"]
    assert cached.checksum(second["db_name"]) == expected
    assert not any("_spare_" in d for d in cached.databases())  # the spare was used up


def test_changed_seed_builds_a_new_template_and_prune_drops_the_old(env: Env) -> None:
    first = allocate(env, "r1")
    old_tpl = details(env, first["reset_id"])["template"]
    assert env.cli("release", "--run-id", "r1").returncode == 0
    extra = env.config.seeds_dir / "v1" / "003_more.sql"
    extra.write_text("INSERT INTO products VALUES (999, 'SKU-X', 'extra', 100);\n")
    second = allocate(env, "r2")
    new_tpl = details(env, second["reset_id"])["template"]
    assert new_tpl != old_tpl
    assert env.query(second["db_name"], "SELECT count(*) FROM products") == [(41,)]
    dry = env.cli("cache", "prune", "--dry-run")
    assert old_tpl in dry.stdout and new_tpl not in dry.stdout
    assert old_tpl in env.databases()
    foreign = f"c{env.tag}_tpl_handmade"
    env.query("postgres", f'CREATE DATABASE "{foreign}"')
    assert env.cli("cache", "prune").returncode == 0
    assert old_tpl not in env.databases() and new_tpl in env.databases()
    assert foreign in env.databases()  # under the prefix, but not made by us: left alone
    listed = json.loads(env.cli("cache", "list", "--json").stdout)
    assert {r["name"]: r["kind"] for r in listed}[foreign] == "unmarked"


def test_c02_clone_from_a_template_with_a_stray_session(env: Env) -> None:
    first = allocate(env, "r1")
    tpl = details(env, first["reset_id"])["template"]
    assert env.cli("release", "--run-id", "r1").returncode == 0
    # a stray session on the template (opened while it still allowed connections)
    env.query("postgres", f'ALTER DATABASE "{tpl}" WITH ALLOW_CONNECTIONS true')
    stray = psycopg.connect(env.pg.url(tpl), autocommit=True)
    env.query("postgres", f'ALTER DATABASE "{tpl}" WITH ALLOW_CONNECTIONS false')
    before = env.checksum(first["db_name"])
    second = allocate(env, "r2")
    assert details(env, second["reset_id"])["clone"] == "template"
    assert env.checksum(second["db_name"]) == before
    assert stray.closed or stray.info.transaction_status is not None
    try:
        stray.execute("SELECT 1")
        raise AssertionError("the stray session on the template survived the clone")
    except psycopg.OperationalError:
        pass
    # templates stay closed to connections
    assert env.query("postgres", "SELECT datallowconn, datistemplate FROM pg_database "
                     "WHERE datname = %s", (tpl,)) == [(False, True)]


def test_background_prewarm_after_release(make_env: Callable[..., Env]) -> None:
    import time

    env = make_env(slots=1, cache="background_prewarm = true")
    allocate(env, "r1")
    assert env.cli("release", "--run-id", "r1").returncode == 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        comments = env.query("postgres", "SELECT shobj_description(oid, 'pg_database') "
                             "FROM pg_database WHERE datname LIKE %s", (f"c{env.tag}_spare_%",))
        if comments and comments[0][0]:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("no spare was prepared in the background")
    second = allocate(env, "r2")
    assert details(env, second["reset_id"])["clone"] == "spare"
