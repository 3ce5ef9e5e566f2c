"""supervisord: one program per slot, for hosts without systemd (containers, laptops, the demo).

Each slot gets ``<supervisor_conf_dir>/<unit>.conf`` with one ``[program:<unit>]``. Its command
runs :mod:`preview_slots.runtime.envexec`, which loads the slot's env file (the same file and
syntax systemd reads) into a clean environment and then execs ``[runtime] exec_start``: the
program refuses to start without its env file, and supervisord's own environment (which might
hold someone else's ``DATABASE_URL``) never reaches the application.

supervisord is driven over its XML-RPC interface (``[runtime] supervisor_url``:
``unix:///path/to.sock`` or ``http://user:password@127.0.0.1:9001``), with the standard library
only.
"""

from __future__ import annotations

import http.client
import shlex
import socket
import time
import xmlrpc.client
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from preview_slots.config import Config, RuntimeSettings, Slot
from preview_slots.errors import ConfigError, RuntimeFailed
from preview_slots.redact import mask
from preview_slots.runtime.base import ServiceState
from preview_slots.runtime.command import exec_argv
from preview_slots.runtime.envfile import env_path, require_env_file
from preview_slots.runtime.proc import listener_outside, listening, read_environ

PROGRAM_MODE = 0o644
ENVEXEC = "preview_slots.runtime.envexec"
RUNNING_STATES = frozenset({"RUNNING"})
FAILED_STATES = frozenset({"FATAL", "EXITED", "UNKNOWN"})
# Fault codes from supervisor.xmlrpc.Faults
BAD_NAME, NOT_RUNNING, ALREADY_STARTED, STILL_RUNNING = 10, 70, 60, 91
_AUTORESTART = {"no": "false", "always": "true", "on-failure": "unexpected",
                "on-abnormal": "unexpected", "on-abort": "unexpected"}


def program_name(slot: Slot) -> str:
    return slot.unit.removesuffix(".service")


def program_path(config: Config, slot: Slot) -> Path:
    return config.runtime.supervisor_conf_dir / f"{program_name(slot)}.conf"


def _value(text: str) -> str:
    """A supervisor config value: ``%`` starts an expansion there."""
    return text.replace("%", "%%")


def render_program(config: Config, slot: Slot, *, python: str) -> str:
    rt = config.runtime
    name = program_name(slot)
    if ":" in name or "%" in name:
        raise ConfigError(f"{slot.unit!r} cannot be a supervisord program name (no ':' or '%')",
                          path=str(config.path) if config.path else None,
                          key=f"slots.{slot.id}.unit")
    argv = [python, "-m", ENVEXEC, str(env_path(config, slot)), "--", *exec_argv(config)]
    lines = [
        "; Managed by preview-slots (`preview-slots provision`); edits here are overwritten.",
        f"; Preview slot {slot.id}: the env file is loaded by {ENVEXEC}, which refuses to start",
        "; the application without it.",
        f"[program:{name}]",
        f"command={_value(shlex.join(argv))}",
    ]
    if rt.working_directory:
        lines.append(f"directory={_value(str(rt.working_directory))}")
    if rt.user:
        lines.append(f"user={rt.user}")
    lines += [
        "autostart=true",
        f"autorestart={_AUTORESTART[rt.restart]}",
        "startsecs=1",
        "startretries=2",
        "stopsignal=TERM",
        "stopwaitsecs=10",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        "",
    ]
    return "\n".join(lines)


# -- XML-RPC plumbing -------------------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__()
        self._path = path
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixConnection(self._path, self._timeout)


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        conn = super().make_connection(host)
        conn.timeout = self._timeout
        return conn


def server_proxy(url: str, timeout: float = 30.0) -> xmlrpc.client.ServerProxy:
    """An XML-RPC proxy for ``unix:///path`` or ``http://...`` (a new one per call: proxies are
    not thread-safe)."""
    if url.startswith("unix://"):
        return xmlrpc.client.ServerProxy("http://localhost/RPC2",
                                         transport=_UnixTransport(url[len("unix://"):], timeout))
    base = url.rstrip("/")
    return xmlrpc.client.ServerProxy(base if base.endswith("/RPC2") else base + "/RPC2",
                                     transport=_TimeoutTransport(timeout))


@dataclass(frozen=True)
class ProgramStatus:
    """One program as supervisord sees it (``info`` is None when it is not loaded)."""

    name: str
    info: dict[str, Any] | None

    @property
    def loaded(self) -> bool:
        return self.info is not None

    @property
    def statename(self) -> str:
        return str(self.info["statename"]) if self.info else "NOT LOADED"

    @property
    def active(self) -> bool:
        return self.statename in RUNNING_STATES

    def as_state(self) -> ServiceState:
        if self.info is None:
            return ServiceState(unit=self.name, active=False, state="NOT LOADED",
                                detail="supervisord has no such program (run provision)")
        pid = int(self.info.get("pid") or 0)
        detail = str(self.info.get("spawnerr") or self.info.get("description") or "")
        return ServiceState(unit=self.name, active=self.active, state=self.statename,
                            main_pid=pid or None, detail=detail)


def serving(pid: int | None, port: int) -> bool:
    """The program ``pid`` (or a child of it) accepts connections on ``port``: not merely
    something else that holds the port (another program started on it first)."""
    return pid is not None and listening(port) and listener_outside(port, pid) is None


class SupervisorManager:
    """:class:`~preview_slots.runtime.base.ServiceManager` over supervisord's XML-RPC API."""

    name = "supervisor"

    def __init__(self, settings: RuntimeSettings, *, timeout: float = 30.0,
                 poll: float = 0.1) -> None:
        self.settings = settings
        self.url = settings.supervisor_url
        self.timeout = timeout
        self.poll = poll

    def call(self, method: str, *args: Any) -> Any:
        """``supervisor.<method>(*args)``; faults propagate as ``xmlrpc.client.Fault``."""
        proxy = server_proxy(self.url, self.timeout)
        try:
            return getattr(proxy.supervisor, method)(*args)
        except xmlrpc.client.Fault:
            raise
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
            raise RuntimeFailed(
                f"supervisord is not answering at {mask(self.url)}: {exc} (start it, or fix "
                "[runtime] supervisor_url)"
            ) from exc
        finally:
            proxy("close")()

    def _fault(self, what: str, exc: xmlrpc.client.Fault) -> RuntimeFailed:
        return RuntimeFailed(f"supervisord could not {what}: {exc.faultString}")

    def ping(self) -> bool:
        try:
            return str(self.call("getState")["statename"]) == "RUNNING"
        except RuntimeFailed:
            return False

    def status(self, slots: Sequence[Slot]) -> dict[str, ProgramStatus]:
        """Keyed by slot id, from one call."""
        infos = {str(i["name"]): i for i in self.call("getAllProcessInfo")
                 if i.get("group") == i.get("name")}
        return {s.id: ProgramStatus(program_name(s), infos.get(program_name(s)))
                for s in slots}

    def _info(self, slot: Slot) -> ProgramStatus:
        name = program_name(slot)
        try:
            return ProgramStatus(name, self.call("getProcessInfo", name))
        except xmlrpc.client.Fault as exc:
            if exc.faultCode == BAD_NAME:
                return ProgramStatus(name, None)
            raise self._fault(f"report {name}", exc) from exc

    # -- ServiceManager ------------------------------------------------------------------------

    def state(self, slot: Slot) -> ServiceState:
        state = self._info(slot).as_state()
        if state.state == "STARTING" and serving(state.main_pid, slot.port):
            # supervisord says RUNNING only once startsecs are over; a program that already
            # serves on its port is up (as wait_running counts it)
            return replace(state, active=True,
                           detail=f"serving on port {slot.port}, within startsecs")
        return state

    def start(self, slot: Slot) -> None:
        self.start_nowait(slot)
        self.wait_running([slot])

    def start_nowait(self, slot: Slot) -> None:
        require_env_file(self.settings.env_dir, slot)
        status = self._info(slot)
        if not status.loaded:
            raise RuntimeFailed(f"supervisord has no program {status.name}: run "
                                "`preview-slots provision` first")
        if status.active or status.statename == "STARTING":
            return
        if status.statename == "BACKOFF":  # start afresh, with a new count of retries
            self._stop(status.name)
        try:
            self.call("startProcess", status.name, False)
        except xmlrpc.client.Fault as exc:
            if exc.faultCode != ALREADY_STARTED:
                raise self._fault(f"start {status.name}", exc) from exc

    def stop(self, slot: Slot) -> None:
        self._stop(program_name(slot))

    def _stop(self, name: str) -> None:
        try:
            self.call("stopProcess", name, True)
        except xmlrpc.client.Fault as exc:
            if exc.faultCode not in (NOT_RUNNING, BAD_NAME):
                raise self._fault(f"stop {name}", exc) from exc

    def restart(self, slot: Slot) -> None:
        self.restart_nowait(slot)
        self.wait_running([slot])

    def restart_nowait(self, slot: Slot) -> None:
        require_env_file(self.settings.env_dir, slot)
        self._stop(program_name(slot))
        self.start_nowait(slot)

    def environment(self, slot: Slot) -> dict[str, str] | None:
        pid = self.host_pid(slot)
        return read_environ(pid) if pid else None

    def host_pid(self, slot: Slot) -> int | None:
        status = self._info(slot)
        return int(status.info.get("pid") or 0) or None if status.info else None

    # -- provisioning --------------------------------------------------------------------------

    def update(self, names: Sequence[str]) -> None:
        """Re-read the config files and apply them to ``names`` only (``supervisorctl update
        NAME...``): new programs are added, changed ones replaced; both start (autostart)."""
        try:
            added, changed, _removed = self.call("reloadConfig")[0]
        except xmlrpc.client.Fault as exc:
            raise self._fault("re-read its configuration", exc) from exc
        for name in names:
            if name not in added and name not in changed and not self._loaded(name):
                raise RuntimeFailed(
                    f"supervisord does not see the program {name}: is "
                    f"{self.settings.supervisor_conf_dir} in supervisord's [include] files?")
            try:
                if name in changed:
                    self._stop(name)
                    self.call("removeProcessGroup", name)
                    self.call("addProcessGroup", name)
                elif name in added:
                    self.call("addProcessGroup", name)
                else:
                    continue
                # autostart would start it on supervisord's next tick; start it now so that
                # its state is STARTING, not a transient STOPPED, when we look
                self.call("startProcess", name, False)
            except xmlrpc.client.Fault as exc:
                if exc.faultCode != ALREADY_STARTED:
                    raise self._fault(f"load program {name}", exc) from exc

    def _loaded(self, name: str) -> bool:
        try:
            self.call("getProcessInfo", name)
        except xmlrpc.client.Fault as exc:
            if exc.faultCode == BAD_NAME:
                return False
            raise self._fault(f"report {name}", exc) from exc
        return True

    def wait_running(self, slots: Sequence[Slot], timeout: float | None = None) -> None:
        """Wait until every slot's program is up: RUNNING, or STARTING and listening on the
        slot's port (supervisord calls it RUNNING only after ``startsecs``)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        ports = {program_name(s): s.port for s in slots}
        pending = set(ports)
        while True:
            infos = {str(i["name"]): i for i in self.call("getAllProcessInfo")}
            for name in sorted(pending):
                info = infos.get(name)
                state = str(info["statename"]) if info else "NOT LOADED"
                # up: RUNNING (it stayed up startsecs), or already serving on its port
                pid = int(info.get("pid") or 0) or None if info else None
                if state in RUNNING_STATES or (state == "STARTING" and serving(pid, ports[name])):
                    pending.discard(name)
                elif state in FAILED_STATES or state in ("STOPPED", "NOT LOADED"):
                    why = f": {info['spawnerr']}" if info and info.get("spawnerr") else ""
                    raise RuntimeFailed(f"{name} did not start under supervisord ({state}{why})"
                                        f"{self._log_tail(name)}")
            if not pending:
                return
            if time.monotonic() > deadline:
                name = sorted(pending)[0]
                state = str(infos[name]["statename"]) if name in infos else "NOT LOADED"
                raise RuntimeFailed(f"{name} is not running after {self.timeout:g}s under "
                                    f"supervisord ({state}){self._log_tail(name)}")
            time.sleep(self.poll)

    def _log_tail(self, name: str) -> str:
        try:
            tail = str(self.call("tailProcessStdoutLog", name, 0, 2000)[0])
        except (xmlrpc.client.Fault, RuntimeFailed):
            return ""
        lines = [line for line in tail.strip().splitlines() if line.strip()]
        return f"; its output ends with: {mask(lines[-1])}" if lines else ""
