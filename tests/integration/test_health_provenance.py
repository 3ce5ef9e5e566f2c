"""The provenance check when the control plane cannot answer (no schema, no server), through
the CLI. Provenance of real resets is checked on the full stack (``test_health_stack.py``)."""

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
