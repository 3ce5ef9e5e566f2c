"""The seed's scripts, called exactly as the original request spells them, from another folder."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import ROOT, Env

SCRIPTS = ROOT / "scripts"


def script(env: Env, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPTS / name), *args], cwd="/", capture_output=True, text=True,
                          env={**os.environ, "PREVIEW_SLOTS_CONFIG": str(env.path)}, timeout=120,
                          check=False)


def test_seed_flow_through_the_scripts(env: Env) -> None:
    slot = env.config.slots[0].id
    dry = script(env, "preview-db-reset-and-seed.sh", "--slot", slot, "--run-id", "dry-run",
                 "--strategy", "seed", "--seed-version", "v1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "nothing was changed" in dry.stdout
    assert env.cp("SELECT count(*) FROM leases") == [(0,)]

    reset = script(env, "preview-db-reset.sh", "--slot", slot)
    assert reset.returncode == 0, reset.stderr
    seed = script(env, "preview-db-seed.sh", "--slot", slot, "--seed-version", "v1")
    assert seed.returncode == 0, seed.stderr
    db = env.config.slots[0].database
    assert env.query(db, "SELECT count(*) FROM customers") == [(100,)]

    both = script(env, "preview-db-reset-and-seed.sh", "--slot", slot, "--run-id", "run-7",
                  "--strategy", "seed", "--seed-version", "v1")
    assert both.returncode == 0, both.stderr

    alloc = script(env, "preview-slot-allocate.sh", "--run-id", "run-8", "--strategy", "seed",
                   "--seed-version", "v1", "--json")
    assert alloc.returncode == 0, alloc.stderr
    assert json.loads(alloc.stdout)["slot_id"] != slot  # run-7 keeps its slot
    rows = env.cp("SELECT run_id, strategy, reset_status FROM preview_db_resets ORDER BY id")
    assert rows == [(f"manual-{slot}", "empty", "succeeded"), (f"manual-{slot}", "seed", "succeeded"),
                    ("run-7", "seed", "succeeded"), ("run-8", "seed", "succeeded")]


def test_scripts_are_executable_and_pass_exit_codes(env: Env) -> None:
    for path in SCRIPTS.glob("preview-*.sh"):
        assert os.access(path, os.X_OK), path
    bad = script(env, "preview-slot-allocate.sh", "--run-id", "", "--strategy", "seed",
                 "--seed-version", "v1")
    assert bad.returncode == 2
    assert Path(SCRIPTS / "_resolve-cli.sh").exists()
