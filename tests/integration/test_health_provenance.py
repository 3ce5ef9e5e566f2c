"""The provenance check against a real control plane (PostgreSQL), through the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.conftest import Env

ONLY_PROVENANCE = ("--skip", "direct", "--skip", "routed", "--skip", "database")


def provenance(payload: dict[str, Any], slot: str) -> dict[str, Any]:
    entry = next(s for s in payload["slots"] if s["slot"] == slot)
    result: dict[str, Any] = entry["checks"]["provenance"]
    return result


def test_provenance_follows_the_last_reset(make_env: Callable[..., Env]) -> None:
    env = make_env(slots=2)
    one, two = (s.id for s in env.config.slots)
    done = env.cli("health", "--json", *ONLY_PROVENANCE)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert provenance(payload, one)["status"] == "skip"
    assert provenance(payload, one)["reason"] == "no reset recorded for this slot yet"

    allocated = env.cli("allocate", "--run-id", "health-1", "--strategy", "seed",
                        "--seed-version", "v1", "--json")
    assert allocated.returncode == 0, allocated.stderr
    slot = json.loads(allocated.stdout)["slot_id"]
    other = two if slot == one else one
    done = env.cli("health", "--json", *ONLY_PROVENANCE)
    assert done.returncode == 0, done.stderr
    check = provenance(json.loads(done.stdout), slot)
    assert check["status"] == "ok"
    assert check["detail"].startswith("seed v1 (run health-1, ")
    assert check["data"]["reset_status"] == "succeeded"

    # A failed reset on the other slot makes that slot unhealthy, with the recorded error.
    env.cp("INSERT INTO preview_db_resets (run_id, slot_id, db_name, strategy, seed_version, "
           "reset_status, finished_at, details) VALUES ('health-2', %s, %s, 'seed', 'v3', "
           "'failed', now(), '{\"error\": \"020_orders.sql:40: SQLSTATE 23503\"}')",
           (other, env.config.slot(other).database))
    done = env.cli("health", *ONLY_PROVENANCE)
    assert done.returncode == 1
    assert (f"{other} provenance: the last reset failed (seed v3, run health-2): "
            "020_orders.sql:40: SQLSTATE 23503") in done.stdout


def test_provenance_without_a_schema_or_a_server(make_env: Callable[..., Env]) -> None:
    env = make_env(slots=1, init=False)
    done = env.cli("health", "--json", *ONLY_PROVENANCE)
    assert done.returncode == 1, done.stderr
    reason = provenance(json.loads(done.stdout), env.config.slots[0].id)["reason"]
    assert reason.startswith("cannot read the last reset: cannot connect to the control plane")
    assert "does not exist" in reason

    env.query("postgres", f'CREATE DATABASE "{env.config.control_plane.dbname}"')
    done = env.cli("health", "--json", *ONLY_PROVENANCE)
    assert done.returncode == 1, done.stderr
    reason = provenance(json.loads(done.stdout), env.config.slots[0].id)["reason"]
    assert reason.startswith("cannot read the last reset:") and "preview-slots init" in reason

    text = env.path.read_text().replace(env.config.control_plane.url,
                                        "postgresql://nobody@127.0.0.1:1/none")
    env.path.write_text(text)
    done = env.cli("health", "--json", *ONLY_PROVENANCE)
    assert done.returncode == 1, done.stderr
    reason = provenance(json.loads(done.stdout), env.config.slots[0].id)["reason"]
    assert reason.startswith("cannot read the last reset: cannot connect to the control plane")
