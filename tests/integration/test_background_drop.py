"""With background work on, the database a reset replaced is dropped by a detached process after
the command returns; resets that follow at once wait for that drop and still succeed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from tests.conftest import Env


def reset(env: Env) -> dict[str, object]:
    result = env.cli("db", "reset-and-seed", "--slot", env.config.slots[0].id, "--run-id", "r",
                     "--strategy", "seed", "--seed-version", "v1", "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    assert data["reset_status"] == "succeeded"
    return data


def test_back_to_back_resets_and_the_old_database_goes_away(
        make_env: Callable[..., Env]) -> None:
    direct = make_env(slots=1, cache="templates = false")
    expected = direct.checksum(str(reset(direct)["db_name"]))
    env = make_env(slots=1, cache="background_prewarm = true")
    old = f"c{env.tag}_old_{env.config.slots[0].id}"
    for _ in range(4):  # each one replaces a database: the previous drop may still be running
        data = reset(env)
    assert env.checksum(str(data["db_name"])) == expected
    deadline = time.monotonic() + 60
    while old in env.databases():
        assert time.monotonic() < deadline, f"{old} was never dropped"
        time.sleep(0.1)
    own = [d for d in env.databases() if d.startswith(f"c{env.tag}_")]
    assert all("_tpl_" in d for d in own), own
