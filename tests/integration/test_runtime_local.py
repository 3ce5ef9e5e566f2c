"""The local stack's services for real: supervisord, Caddy and the example app on loopback.

Each test gets its own state folder, free ports and slot databases on the session's PostgreSQL,
starts everything with :func:`preview_slots.local.services.start_services` and stops it after.
Requests go through Caddy with each slot's Host header. Cases C-08 and C-11 under supervisord,
C-09 (Caddy refuses the new config), and the dry-run guarantee.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from preview_slots.config import Config, load_config
from preview_slots.errors import RuntimeFailed
from preview_slots.local import services
from preview_slots.local.pg import LocalPostgres, free_ports
from preview_slots.runtime.factory import make_manager
from preview_slots.runtime.provision import provision
from preview_slots.runtime.supervisor import SupervisorManager


@dataclass
class Stack:
    state: Path
    pg: LocalPostgres
    tag: str
    ports: list[int]
    path: Path | None = None

    def write(self, *, directives: tuple[str, ...] = (), exec_extra: str = "",
              slot_env: str = "", env: str = "") -> Config:
        text = f'[database]\nurl = "{self.pg.url("postgres")}"\n\n[env]\n{env}\n'
        for n, port in enumerate(self.ports, 1):
            text += (f'\n[[slots]]\nid = "preview{n}"\nhost = "preview{n}.example.com"\n'
                     f'port = {port}\nstatic_root = "{self.state}/static/preview{n}"\n'
                     f'database = "{self.tag}_app_{n}"\nunit = "ouroboros-web@preview{n}"\n')
            if n == 2 and slot_env:
                text += f"[slots.env]\n{slot_env}\n"
        sections = services.local_config_toml(self.state)
        if directives:
            sections = re.sub(r"^site_directives = .*$",
                              f"site_directives = {json.dumps(['bind 127.0.0.1', *directives])}",
                              sections, flags=re.M)
        if exec_extra:
            sections = re.sub(r'^(exec_start = ".*)"$', lambda m: m[1] + exec_extra + '"',
                              sections, flags=re.M)
        self.path = self.state / "preview-slots.toml"
        self.path.write_text(text + "\n" + sections)
        return load_config(self.path)

    @property
    def config(self) -> Config:
        assert self.path is not None
        return load_config(self.path)

    def get(self, host: str, path: str = "/health") -> tuple[int, dict[str, str], bytes]:
        """A request to Caddy's HTTP port with ``host`` as the Host header."""
        conn = http.client.HTTPConnection("127.0.0.1", self.config.caddy.http_port, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": host})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full = {**os.environ, "PREVIEW_SLOTS_CONFIG": str(self.path), **(env or {})}
        return subprocess.run([sys.executable, "-m", "preview_slots", *args], env=full,
                              capture_output=True, text=True, timeout=120, check=False)

    def programs(self) -> dict[str, int]:
        """Each program's pid (0 when not running): a restart changes it."""
        manager = SupervisorManager(self.config.runtime)
        return {str(i["name"]): int(i["pid"]) for i in manager.call("getAllProcessInfo")}

    def caddy_config(self) -> Any:
        admin = self.config.caddy.admin
        with urllib.request.urlopen(f"http://{admin}/config/", timeout=5) as response:
            return json.loads(response.read())


@pytest.fixture(scope="module")
def databases(pg: LocalPostgres) -> Iterator[str]:
    """Three slot databases shared by this module's tests (the app only reads them)."""
    tag = f"rt{os.getpid() % 10000}"
    with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
        for n in (1, 2, 3):
            conn.execute(f"DROP DATABASE IF EXISTS {tag}_app_{n}")
            conn.execute(f"CREATE DATABASE {tag}_app_{n}")
    yield tag
    with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
        for n in (1, 2, 3):
            conn.execute(f"DROP DATABASE IF EXISTS {tag}_app_{n} WITH (FORCE)")


@pytest.fixture
def stack(pg: LocalPostgres, databases: str) -> Iterator[Stack]:
    # short and outside pytest's tree: supervisord's socket path must stay under ~100 bytes
    state = Path(tempfile.mkdtemp(prefix="ps-rt-"))
    made = Stack(state, pg, databases, free_ports(3, avoid={pg.port}))
    try:
        yield made
    finally:
        services.stop_services(state)
        shutil.rmtree(state, ignore_errors=True)


def tree_hash(*paths: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for root in paths:
        for path in sorted([root, *root.rglob("*")] if root.is_dir() else [root]):
            if not path.exists():
                continue
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            out[str(path)] = f"{digest} {stat.S_IMODE(st.st_mode):o} {st.st_uid}:{st.st_gid}"
    return out


def test_local_stack_routes_each_host_to_its_slot(stack: Stack) -> None:
    config = stack.write()
    services.start_services(stack.state, config)
    for slot in config.slots:
        status, _, body = stack.get(slot.host)
        assert status == 200
        assert json.loads(body) == {"status": "ok", "slot": slot.id, "database": slot.database}
        status, _, body = stack.get(slot.host, "/")
        assert status == 200 and f"Preview slot {slot.id}".encode() in body
    _, _, body = stack.get("unknown.example.com")
    assert b"slot" not in body  # Caddy answers unknown hosts itself, with nothing
    deadline = time.monotonic() + 10  # supervisord says RUNNING once startsecs are over
    while True:
        lines = services.services_status(stack.state)
        running = [p for p in ("ouroboros-web@preview3", "caddy")
                   if any(line.startswith(f"{p}: RUNNING") for line in lines)]
        if len(running) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert running == ["ouroboros-web@preview3", "caddy"], lines

    # idempotent: starting again changes nothing and restarts nothing
    before = stack.programs()
    services.start_services(stack.state, config)
    result = provision(config)
    assert result.plan.empty and stack.programs() == before
    env_file = stack.state / "env" / "preview1.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600

    services.stop_services(stack.state)
    assert services.services_status(stack.state) == ["supervisord: not running"]
    for pid in before.values():
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_c08_supervisor_restarts_exactly_what_changed(stack: Stack) -> None:
    services.start_services(stack.state, stack.write())
    before = stack.programs()

    config = stack.write(slot_env='FEATURE = "on"')
    result = provision(config)
    assert result.plan.restarts() == ("preview2",)
    after = stack.programs()
    assert after["ouroboros-web@preview1"] == before["ouroboros-web@preview1"]
    assert after["ouroboros-web@preview3"] == before["ouroboros-web@preview3"]
    assert after["ouroboros-web@preview2"] != before["ouroboros-web@preview2"]
    env = make_manager(config).environment(config.slot("preview2"))
    assert env is not None and env["FEATURE"] == "on"

    # a new flag in the start command changes every program definition: all are replaced
    config = stack.write(slot_env='FEATURE = "on"', exec_extra=" --unused-flag")
    result = provision(config)
    assert sorted(result.plan.restarts()) == ["preview1", "preview2", "preview3"]
    final = stack.programs()
    assert all(final[n] != after[n] for n in final if n != "caddy")
    assert final["caddy"] == after["caddy"]
    assert provision(config).plan.empty
    assert stack.programs() == final


def test_c11_supervisor_service_never_falls_back(
    stack: Stack, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # supervisord (and so every child) inherits a DATABASE_URL pointing at a shared database
    monkeypatch.setenv("DATABASE_URL", stack.pg.url("postgres"))
    config = stack.write()
    services.start_services(stack.state, config)
    slot = config.slot("preview1")
    manager = make_manager(config)
    env = manager.environment(slot)
    assert env is not None
    assert env["DATABASE_URL"] == config.database.slot_url(slot.database).url
    status, _, body = stack.get(slot.host)
    assert json.loads(body)["database"] == slot.database

    (stack.state / "env" / "preview1.env").unlink()
    # the tool refuses before stopping what runs...
    with pytest.raises(RuntimeFailed, match=r"env file .*/preview1\.env is missing"):
        manager.restart(slot)
    assert manager.state(slot).active
    # ...and the program itself refuses to start without it
    supervisor = SupervisorManager(config.runtime)
    supervisor.stop(slot)
    with pytest.raises(xmlrpc.client.Fault, match=r"ABNORMAL_TERMINATION|SPAWN_ERROR"):
        supervisor.call("startProcess", slot.unit, True)
    assert not manager.state(slot).active
    log = str(supervisor.call("tailProcessStdoutLog", slot.unit, 0, 4000)[0])
    assert "envexec: refusing to start" in log and "preview1.env" in log
    status, _, _ = stack.get(slot.host)
    assert status == 502  # nothing answers for preview1: no fallback app

    result = provision(config)  # puts the env file back and starts the program
    assert result.applied and manager.state(slot).state in ("STARTING", "RUNNING")
    status, _, body = stack.get(slot.host)
    assert status == 200 and json.loads(body)["database"] == slot.database


def _assert_previous_caddy_live(stack: Stack, caddyfile_before: bytes, live_before: Any) -> None:
    config = stack.config
    assert config.caddy.caddyfile.read_bytes() == caddyfile_before
    assert not list(config.caddy.caddyfile.parent.glob(".Caddyfile.*"))  # no temp left behind
    if live_before is not None:
        assert stack.caddy_config() == live_before
    for slot in config.slots:
        status, headers, body = stack.get(slot.host)
        assert status == 200 and json.loads(body)["slot"] == slot.id
        assert "X-Preview" not in headers


def test_a_slot_port_held_by_another_program_is_never_taken_for_the_slot(stack: Stack) -> None:
    """The stack is stopped, another program takes a slot's port, the stack starts again (its
    definitions unchanged, so provision has nothing to apply): starting fails naming the
    program, instead of counting the other listener as the app (a program is STARTING during
    supervisord's startsecs; only its own listener makes it up)."""
    config = stack.write()
    services.start_services(stack.state, config)
    services.stop_services(stack.state)
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", config.slots[1].port))
        other.listen()
        with pytest.raises(RuntimeFailed, match="ouroboros-web@preview2"):
            services.start_services(stack.state, config)


def test_c09_invalid_caddyfile_keeps_previous_file_live(stack: Stack) -> None:
    services.start_services(stack.state, stack.write())
    caddyfile = stack.config.caddy.caddyfile
    before, live = caddyfile.read_bytes(), stack.caddy_config()

    stack.write(directives=("header X-Preview yes", "bogus_directive on"),
                slot_env='FEATURE = "on"')
    result = stack.cli("provision")
    assert result.returncode == 1
    assert "Caddy rejects the new Caddyfile" in result.stderr
    assert "unrecognized directive: bogus_directive" in result.stderr
    assert result.stderr.count("\n") == 1  # one line, no traceback
    _assert_previous_caddy_live(stack, before, live)
    # validation runs before any step: the env file change was not applied either
    assert "FEATURE" not in (stack.state / "env" / "preview2.env").read_text()


def test_c09_admin_endpoint_off_keeps_previous_file_live(stack: Stack) -> None:
    config = stack.write()
    services.start_services(stack.state, config)
    caddyfile = config.caddy.caddyfile
    before = caddyfile.read_bytes()
    # someone reloads Caddy with its admin endpoint off
    no_admin = stack.state / "no-admin.caddyfile"
    no_admin.write_text(re.sub(r"admin \S+", "admin off", caddyfile.read_text()))
    subprocess.run([config.caddy.binary, "reload", "--config", str(no_admin), "--adapter",
                    "caddyfile", "--address", config.caddy.admin], check=True,
                   capture_output=True, timeout=60)

    stack.write(directives=("header X-Preview yes",))
    result = stack.cli("provision")
    assert result.returncode == 1
    assert f"admin endpoint {config.caddy.admin}" in result.stderr
    assert "connection refused" in result.stderr
    assert "still serves the previous configuration" in result.stderr
    _assert_previous_caddy_live(stack, before, None)


def test_dry_run_changes_no_file_and_no_service(stack: Stack) -> None:
    services.start_services(stack.state, stack.write())
    config = stack.write(directives=("header X-Preview yes",), exec_extra=" --flag",
                         slot_env='SECRET_TOKEN = "hush-hush-1234"')
    managed = (stack.state / "env", stack.state / "supervisor" / "conf.d",
               config.caddy.caddyfile, stack.state / "static")
    files_before = tree_hash(*managed)
    states_before, live_before = stack.programs(), stack.caddy_config()

    result = stack.cli("provision", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert tree_hash(*managed) == files_before
    assert stack.programs() == states_before
    assert stack.caddy_config() == live_before
    out = result.stdout
    assert "supervisord: reread and update" in out and "caddy: validate, reload" in out
    assert "+\theader X-Preview yes" in out and "+SECRET_TOKEN=***" in out
    assert "hush-hush-1234" not in out and stack.pg.password not in out
    assert "dry run: nothing was changed" in out


def test_scripts_wrapper_runs_provision_from_any_folder(stack: Stack, tmp_path: Path) -> None:
    stack.write()
    script = Path(__file__).resolve().parents[2] / "scripts" / "preview-slots-provision.sh"
    full = {**os.environ, "PREVIEW_SLOTS_CONFIG": str(stack.path)}
    result = subprocess.run([str(script), "--dry-run"], cwd=tmp_path, env=full,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "dry run: nothing was changed" in result.stdout
    assert not (stack.state / "env").exists()


