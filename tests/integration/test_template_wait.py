"""Two resets that need the same template at once: the second waits for the first to build it,
however long that takes (longer than the slot server session's 10 s lock_timeout here)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.conftest import EXAMPLE_SEEDS, Env


def test_second_reset_waits_for_a_slow_template_build(make_env: Callable[..., Env],
                                                       tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    shutil.copytree(EXAMPLE_SEEDS / "v1", seeds / "slow")
    (seeds / "slow" / "000_pause.sql").write_text("SELECT pg_sleep(12);\n")
    env = make_env(slots=2, seeds=seeds)
    procs = [env.popen("db", "reset-and-seed", "--slot", slot.id, "--run-id", f"r{n}",
                       "--strategy", "seed", "--seed-version", "slow", "--json")
             for n, slot in enumerate(env.config.slots)]
    results = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    ids = [json.loads(out)["reset_id"] for out, _err in results]
    rows = [env.cp("SELECT details FROM preview_db_resets WHERE id = %s", (i,))[0][0]
            for i in ids]
    assert rows[0]["template"] == rows[1]["template"]
    assert sorted(r["template_built"] for r in rows) == [False, True]
