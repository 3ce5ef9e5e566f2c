"""Health on the real stack: supervisord (the real ``SupervisorManager``) running Caddy and the
example application for three slots, PostgreSQL holding the slot databases and the control plane,
everything provisioned by ``preview-slots provision``. The CLI runs as a subprocess, as CI would.

One stack serves the whole module; every test puts back what it broke.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from preview_slots.config import Config, load_config
from preview_slots.local.pg import LocalPostgres, free_ports
from preview_slots.local.services import local_config_toml, start_services, stop_services
from preview_slots.runtime.envfile import env_path
from preview_slots.runtime.supervisor import SupervisorManager
from tests.conftest import EXAMPLE_SEEDS

CADDY_PROGRAM = "caddy"


@dataclass
class RealStack:
    state: Path
    path: Path
    config: Config
    pg: LocalPostgres

    @property
    def manager(self) -> SupervisorManager:
        return SupervisorManager(self.config.runtime, timeout=30)

    def cli(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "PREVIEW_SLOTS_CONFIG"}
        return subprocess.run([sys.executable, "-m", "preview_slots", "--config", str(self.path),
                               *args], capture_output=True, text=True, timeout=timeout, env=env,
                              check=False)

    def health(self, *args: str) -> tuple[int, dict[str, Any]]:
        done = self.cli("health", "--json", *args)
        assert done.returncode in (0, 1), done.stderr
        payload: dict[str, Any] = json.loads(done.stdout)
        return done.returncode, payload

    def caddy_load(self, caddyfile: str) -> None:
        """Load a Caddyfile into the running Caddy through its admin endpoint."""
        tmp = self.state / "caddy" / "override.Caddyfile"
        tmp.write_text(caddyfile)
        subprocess.run([self.config.caddy.binary, "reload", "--config", str(tmp), "--adapter",
                        "caddyfile", "--address", self.config.caddy.admin], check=True,
                       capture_output=True, timeout=30)


def checks(payload: dict[str, Any], slot: str) -> dict[str, dict[str, Any]]:
    entry = next(s for s in payload["slots"] if s["slot"] == slot)
    result: dict[str, dict[str, Any]] = entry["checks"]
    return result


def verdicts(payload: dict[str, Any], slot: str) -> dict[str, str]:
    return {name: c["status"] for name, c in checks(payload, slot).items()}


ALL_OK = {"direct": "ok", "routed": "ok", "service": "ok", "database": "ok", "provenance": "ok"}


@pytest.fixture(scope="module")
def real(pg: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealStack]:
    state = tmp_path_factory.mktemp("hstack").resolve()
    tag = f"h{os.getpid() % 10000}"
    ports = free_ports(3, avoid={pg.port})
    slots = "".join(
        f'[[slots]]\nid = "preview{n}"\nhost = "preview{n}.example.com"\nport = {ports[n - 1]}\n'
        f'static_root = "{state}/static/preview{n}"\ndatabase = "{tag}_app_preview_{n}"\n\n'
        for n in (1, 2, 3))
    text = (f'[database]\nurl = "{pg.url("postgres")}"\nbin_dir = "{pg.bin_dir}"\n\n'
            f'[control_plane]\nurl = "{pg.url(tag + "_cp")}"\n\n'
            f'[seeds]\ndir = "{EXAMPLE_SEEDS}"\n\n[snapshots]\ndir = "{state}/snapshots"\n\n'
            f'[cache]\nprefix = "c{tag}_"\n\n{slots}' + local_config_toml(state))
    path = state / "preview-slots.toml"
    path.write_text(text)
    config = load_config(path)
    stack = RealStack(state, path, config, pg)
    try:
        start_services(state, config)
        done = stack.cli("init")
        assert done.returncode == 0, done.stderr
        # Reset every slot through the real allocate (with its readiness wait), all at once.
        env = {k: v for k, v in os.environ.items() if k != "PREVIEW_SLOTS_CONFIG"}
        runs = [subprocess.Popen([sys.executable, "-m", "preview_slots", "--config", str(path),
                                  "allocate", "--run-id", f"health-{n}", "--strategy", "seed",
                                  "--seed-version", "v1", "--json"], env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for n in (1, 2, 3)]
        for run in runs:
            out, err = run.communicate(timeout=120)
            assert run.returncode == 0, out + err
        yield stack
    finally:
        stop_services(state)


def test_all_healthy_under_supervisord(real: RealStack) -> None:
    code, payload = real.health()
    assert code == 0, payload
    for slot in real.config.slots:
        assert verdicts(payload, slot.id) == ALL_OK
        found = checks(payload, slot.id)
        # just restarted by allocate: RUNNING, or STARTING within startsecs while it serves
        assert re.match(r"(RUNNING|STARTING), pid \d+", found["service"]["detail"]), found
        assert found["service"]["target"] == f"supervisor: {slot.unit}"
        assert found["database"]["detail"] == slot.database
        assert found["provenance"]["detail"].startswith("seed v1 (run health-")
        assert found["routed"]["code"] == 200
    # The table, for people.
    done = real.cli("health")
    assert done.returncode == 0
    assert "3 of 3 slots healthy" in done.stdout
    assert done.stdout.splitlines()[1].split()[2:4] == ["ok", "200"]


def test_one_service_stopped(real: RealStack) -> None:
    slot = real.config.slot("preview2")
    real.manager.stop(slot)
    try:
        code, payload = real.health()
        assert code == 1
        assert verdicts(payload, "preview2") == {**ALL_OK, "direct": "fail", "routed": "fail",
                                                 "service": "fail", "database": "fail"}
        found = checks(payload, "preview2")
        assert found["direct"]["reason"] == "connection refused"
        assert found["routed"]["code"] == 502
        assert "is not answering (connection refused)" in found["routed"]["reason"]
        assert found["service"]["reason"].startswith(f"{slot.unit} is STOPPED")
        assert verdicts(payload, "preview1") == ALL_OK
        assert verdicts(payload, "preview3") == ALL_OK
        table = real.cli("health", "--slot", "preview2")
        assert table.returncode == 1
        row = next(line for line in table.stdout.splitlines() if line.startswith("preview2 "))
        assert row.split()[2:5] == ["FAIL", "FAIL", "502"] and row.endswith("UNHEALTHY")
        assert "preview2 direct: connection refused" in table.stdout
        assert "preview2 routed: 502 from proxy (bad gateway)" in table.stdout
    finally:
        real.manager.start(slot)


def test_restart_during_wait(real: RealStack) -> None:
    """The slot's service is down when `health --wait` starts and comes back ~1s later."""
    slot = real.config.slot("preview3")
    real.manager.stop(slot)
    proc = subprocess.Popen(
        [sys.executable, "-m", "preview_slots", "--config", str(real.path), "health", "--json",
         "--wait", "30s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        real.manager.start_nowait(slot)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        real.manager.wait_running([slot])
    assert proc.returncode == 0, out + err
    payload = json.loads(out)
    assert payload["healthy"] is True and payload["attempts"] > 1
    assert verdicts(payload, "preview3") == ALL_OK


def test_c10_caddy_routes_a_host_to_another_slot(real: RealStack) -> None:
    cd = real.config.caddy
    two, three = real.config.slot("preview2"), real.config.slot("preview3")
    installed = cd.caddyfile.read_text()
    wrong = installed.replace(f"reverse_proxy 127.0.0.1:{two.port}",
                              f"reverse_proxy 127.0.0.1:{three.port}")
    assert wrong != installed
    real.caddy_load(wrong)
    try:
        code, payload = real.health("--slot", "preview2")
        assert code == 1
        assert verdicts(payload, "preview2") == {**ALL_OK, "routed": "fail"}
        routed = checks(payload, "preview2")["routed"]
        assert routed["code"] == 200
        assert routed["reason"].startswith("wrong Host routing: preview2.example.com reached "
                                           "preview3")
        assert f"Caddy sends preview2.example.com to 127.0.0.1:{three.port}" in routed["reason"]
    finally:
        real.caddy_load(installed)
    assert real.health()[0] == 0


def test_c11_service_started_on_another_database(real: RealStack) -> None:
    """Someone points preview2's env file at preview1's database and restarts it: the app and
    its real environment both say so; `provision` puts the slot back."""
    one, two = real.config.slot("preview1"), real.config.slot("preview2")
    envfile = env_path(real.config, two)
    original = envfile.read_text()
    envfile.write_text(original.replace(f"/{two.database}", f"/{one.database}"))
    real.manager.restart(two)
    try:
        code, payload = real.health()
        assert code == 1
        assert verdicts(payload, "preview2") == {**ALL_OK, "database": "fail"}
        reason = checks(payload, "preview2")["database"]["reason"]
        assert reason == (f"wrong database: the app reports {one.database} (preview1's "
                          f"database), expected {two.database}")
        env = real.manager.environment(two)
        assert env is not None and env["DATABASE_URL"].endswith(f"/{one.database}")
    finally:
        done = real.cli("provision", "--slot", "preview2")
        assert done.returncode == 0, done.stderr
    code, payload = real.health("--slot", "preview2", "--wait", "20s")
    assert code == 0, payload


def test_caddy_down(real: RealStack) -> None:
    real.manager.call("stopProcess", CADDY_PROGRAM, True)
    try:
        code, payload = real.health()
        assert code == 1
        for slot in real.config.slots:
            assert verdicts(payload, slot.id) == {**ALL_OK, "routed": "fail"}
            assert checks(payload, slot.id)["routed"]["reason"] == \
                "proxy: connection refused (is Caddy running?)"
    finally:
        real.manager.call("startProcess", CADDY_PROGRAM, True)
    code, payload = real.health("--wait", "20s")
    assert code == 0, payload


def test_slot_database_gone(real: RealStack) -> None:
    """The slot's database disappears under a running app: direct 503 and database fail."""
    slot = real.config.slot("preview1")
    with psycopg.connect(real.pg.url("postgres"), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{slot.database}" RENAME TO "{slot.database}_away"')
    try:
        code, payload = real.health("--slot", "preview1")
        assert code == 1
        found = checks(payload, "preview1")
        assert found["direct"]["status"] == "fail" and found["direct"]["code"] == 503
        assert found["database"]["reason"].startswith(f"{slot.database} is not reachable")
    finally:
        with psycopg.connect(real.pg.url("postgres"), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{slot.database}_away" RENAME TO "{slot.database}"')


def test_provenance_of_a_failed_reset(real: RealStack) -> None:
    """A failed reset recorded for preview3 makes it unhealthy, with the recorded error; a
    later successful one makes it healthy again."""
    slot = real.config.slot("preview3")
    insert = ("INSERT INTO preview_db_resets (run_id, slot_id, db_name, strategy, seed_version, "
              "reset_status, finished_at, details) VALUES (%s, %s, %s, 'seed', %s, %s, now(), "
              "%s::jsonb)")
    with psycopg.connect(real.pg.url(real.config.control_plane.dbname), autocommit=True) as conn:
        conn.execute(insert, ("health-9", slot.id, slot.database, "v3", "failed",
                              json.dumps({"error": "020_orders.sql:40: SQLSTATE 23503"})))
        try:
            done = real.cli("health", "--skip", "direct", "--skip", "routed")
            assert done.returncode == 1
            assert ("preview3 provenance: the last reset failed (seed v3, run health-9): "
                    "020_orders.sql:40: SQLSTATE 23503") in done.stdout
            assert "2 of 3 slots healthy; unhealthy: preview3" in done.stdout
        finally:
            conn.execute(insert, ("health-10", slot.id, slot.database, "v1", "succeeded", "{}"))
    code, payload = real.health("--slot", "preview3")
    assert code == 0, payload
    assert checks(payload, "preview3")["provenance"]["detail"].startswith("seed v1 (run health-10")
