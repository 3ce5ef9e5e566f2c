"""A provisioning plan: typed actions that say what would change, then do it.

:func:`preview_slots.runtime.provision.build_plan` reads the host (files, service states) and
returns a :class:`Plan`; ``--dry-run`` prints :meth:`Plan.render` (every line masked) and stops;
:func:`apply` first validates everything that can be validated (the unit with
``systemd-analyze verify``, the Caddyfile with ``caddy validate``), so that a bad rendering
changes nothing, then runs the actions in order through the backends.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from preview_slots.errors import PreviewSlotsError, RuntimeFailed
from preview_slots.redact import mask
from preview_slots.runtime import files
from preview_slots.runtime.proc import command_line, listener_outside, listening

if TYPE_CHECKING:
    from preview_slots.config import Config, Slot
    from preview_slots.runtime.base import ServiceManager, ServiceState
    from preview_slots.runtime.supervisor import ProgramStatus
    from preview_slots.runtime.systemd import UnitStatus


# -- what apply needs from the host ----------------------------------------------------------


class UnitBackend(Protocol):
    """systemd's part (see :class:`~preview_slots.runtime.systemd.SystemdManager`)."""

    def status(self, slots: Sequence[Slot]) -> dict[str, UnitStatus]: ...

    def daemon_reload(self) -> None: ...

    def enable(self, slot: Slot, *, now: bool) -> None: ...

    def verify_unit(self, config: Config, content: str) -> str | None: ...


class ProgramBackend(Protocol):
    """supervisord's part (see :class:`~preview_slots.runtime.supervisor.SupervisorManager`)."""

    def status(self, slots: Sequence[Slot]) -> dict[str, ProgramStatus]: ...

    def update(self, names: Sequence[str]) -> None: ...

    def start_nowait(self, slot: Slot) -> None: ...

    def restart_nowait(self, slot: Slot) -> None: ...

    def wait_running(self, slots: Sequence[Slot], timeout: float | None = None) -> None: ...


class Processes(Protocol):
    def host_pid(self, slot: Slot) -> int | None:
        """The service's main process as seen from here, when known."""
        ...


class CaddyBackend(Protocol):
    def validate(self, content: str) -> None: ...

    def install(self, path: Path, content: str, *, mode: int = ...) -> None: ...


@dataclass
class Backends:
    config: Config
    services: ServiceManager | None = None
    units: UnitBackend | None = None
    programs: ProgramBackend | None = None
    caddy: CaddyBackend | None = None
    processes: Processes | None = None
    notes: list[str] = field(default_factory=list)


# -- actions -----------------------------------------------------------------------------------


def _mode(mode: int) -> str:
    return f"{mode:04o}"


@dataclass(frozen=True)
class MakeDirectory:
    path: Path
    mode: int
    uid: int | None
    gid: int | None
    what: str

    def describe(self) -> list[str]:
        return [f"create folder {self.path} ({self.what}; mode {_mode(self.mode)}, "
                f"{files.owner_label(self.uid, self.gid)})"]

    def apply(self, backends: Backends) -> None:
        files.make_dirs(self.path, self.mode, self.uid, self.gid)


@dataclass(frozen=True)
class WriteFile:
    """Install ``content`` at ``path`` atomically (mode and group set before the rename)."""

    path: Path
    content: str
    mode: int
    uid: int | None
    gid: int | None
    old: str | None  # None: the file does not exist yet
    what: str  # "env file of preview1", "systemd unit", ...
    content_changed: bool = True
    validate: str | None = None  # "systemd-unit" to run systemd-analyze verify first

    def describe(self) -> list[str]:
        meta = f"mode {_mode(self.mode)}, {files.owner_label(self.uid, self.gid)}"
        if self.old is None:
            head = f"write {self.path} ({self.what}, new file; {meta})"
        elif self.content_changed:
            head = f"write {self.path} ({self.what}; {meta})"
        else:
            return [f"fix mode/owner of {self.path} ({self.what}; {meta}; content unchanged)"]
        return [head, *("    " + line for line in
                        files.masked_diff(self.old, self.content, self.path))]

    def apply(self, backends: Backends) -> None:
        files.install_file(self.path, self.content, mode=self.mode, uid=self.uid, gid=self.gid)


@dataclass(frozen=True)
class DaemonReload:
    reason: str

    def describe(self) -> list[str]:
        return [f"systemctl daemon-reload ({self.reason})"]

    def apply(self, backends: Backends) -> None:
        assert backends.units is not None
        backends.units.daemon_reload()


@dataclass(frozen=True)
class EnableService:
    slot: Slot
    start: bool

    def describe(self) -> list[str]:
        now = " --now" if self.start else ""
        return [f"systemctl enable{now} {self.slot.unit} (slot {self.slot.id})"]

    def apply(self, backends: Backends) -> None:
        assert backends.units is not None
        backends.units.enable(self.slot, now=self.start)


@dataclass(frozen=True)
class UpdatePrograms:
    """supervisord: re-read program files; add new programs, replace changed ones (restarts)."""

    slots: tuple[Slot, ...]

    @property
    def names(self) -> tuple[str, ...]:
        from preview_slots.runtime.supervisor import program_name

        return tuple(program_name(s) for s in self.slots)

    def describe(self) -> list[str]:
        return [f"supervisord: reread and update {', '.join(self.names)} (starts them with the "
                "new program definition)"]

    def apply(self, backends: Backends) -> None:
        assert backends.programs is not None
        backends.programs.update(self.names)


@dataclass(frozen=True)
class StartService:
    slot: Slot
    reason: str

    def describe(self) -> list[str]:
        return [f"start {self.slot.unit} (slot {self.slot.id}: {self.reason})"]

    def apply(self, backends: Backends) -> None:
        if backends.programs is not None:
            backends.programs.start_nowait(self.slot)
        else:
            assert backends.services is not None
            backends.services.start(self.slot)


@dataclass(frozen=True)
class RestartService:
    slot: Slot
    reason: str

    def describe(self) -> list[str]:
        return [f"restart {self.slot.unit} (slot {self.slot.id}: {self.reason})"]

    def apply(self, backends: Backends) -> None:
        if backends.programs is not None:
            backends.programs.restart_nowait(self.slot)
        else:
            assert backends.services is not None
            backends.services.restart(self.slot)


@dataclass(frozen=True)
class CheckServices:
    """After (re)starts: each service runs, and with its own slot's environment (C-11)."""

    slots: tuple[Slot, ...]
    expected: tuple[tuple[str, str], ...] = ()  # (slot id, DATABASE_URL)

    listen_timeout: float = 30.0

    def describe(self) -> list[str]:
        units = ", ".join(s.unit for s in self.slots)
        return [f"check that {units} run, each with its own slot's DATABASE_URL, and listen on "
                "their ports"]

    def apply(self, backends: Backends) -> None:
        if backends.programs is not None:
            backends.programs.wait_running(self.slots)
        services = backends.services
        if services is None:
            return
        deadline = time.monotonic() + self.listen_timeout
        for slot in self.slots:
            # listening first: until then the process may not have exec'd the application yet
            self._wait_listening(services, slot, deadline)
            state = services.state(slot)
            if not _alive(state):
                raise RuntimeFailed(f"{slot.unit} stopped right after its start ({state.state}: "
                                    f"{state.detail or 'no detail'}); see its log")
            pid = backends.processes.host_pid(slot) if backends.processes else None
            other = listener_outside(slot.port, pid) if pid else None
            if other is not None:
                raise RuntimeFailed(
                    f"127.0.0.1:{slot.port} is held by another program (pid {other}: "
                    f"{command_line(other)}), not by {slot.unit}: stop that program or give "
                    f"slot {slot.id} another port")
            self._check_environment(services, slot)

    def _wait_listening(self, services: ServiceManager, slot: Slot, deadline: float) -> None:
        polls = 0
        while not listening(slot.port):
            if time.monotonic() > deadline:
                raise RuntimeFailed(f"{slot.unit} runs but nothing listens on 127.0.0.1:"
                                    f"{slot.port} after {self.listen_timeout:g}s; see its log")
            polls += 1
            if polls % 10 == 0 and not _alive(state := services.state(slot)):
                raise RuntimeFailed(f"{slot.unit} stopped right after its start ({state.state}: "
                                    f"{state.detail or 'no detail'}); see its log")
            time.sleep(0.05)

    def _check_environment(self, services: ServiceManager, slot: Slot) -> None:
        env = services.environment(slot)
        if env is None:
            return  # the manager cannot show it (e.g. not allowed to read /proc)
        for key, want in (("PREVIEW_SLOT", slot.id), ("DATABASE_URL", dict(self.expected).get(slot.id))):
            if want is not None and env.get(key) != want:
                raise RuntimeFailed(
                    f"{slot.unit} runs with {key}={mask(env.get(key) or '<unset>')}, not its "
                    f"slot's {mask(want)}: it does not use its own env file; check the unit "
                    "or program definition and run provision again")


def _alive(state: ServiceState) -> bool:
    """Running, or (supervisord) still in its ``startsecs`` but already up."""
    return state.active or state.state == "STARTING"


@dataclass(frozen=True)
class InstallCaddyfile:
    """Validate, load into Caddy through its admin endpoint, then rename into place."""

    path: Path
    content: str
    old: str | None
    mode: int
    admin: str

    def describe(self) -> list[str]:
        state = "new file" if self.old is None else "changed"
        head = (f"caddy: validate, reload through the admin endpoint {self.admin}, then install "
                f"{self.path} ({state})")
        return [head, *("    " + line for line in
                        files.masked_diff(self.old, self.content, self.path))]

    def apply(self, backends: Backends) -> None:
        assert backends.caddy is not None
        backends.caddy.install(self.path, self.content, mode=self.mode)


Action = (MakeDirectory | WriteFile | DaemonReload | EnableService | UpdatePrograms
          | StartService | RestartService | CheckServices | InstallCaddyfile)


# -- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    manager: str
    slots: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.actions

    def restarts(self) -> tuple[str, ...]:
        """Slot ids whose service the plan restarts (or replaces under supervisord)."""
        out: list[str] = []
        for action in self.actions:
            if isinstance(action, RestartService):
                out.append(action.slot.id)
            elif isinstance(action, UpdatePrograms):
                out += [s.id for s in action.slots]
        return tuple(out)

    def render(self) -> list[str]:
        lines = [f"plan for {', '.join(self.slots)} (manager: {self.manager})"]
        if self.empty:
            lines.append("no changes")
        for number, action in enumerate(self.actions, 1):
            first, *rest = action.describe()
            lines.append(f"{number:3d}. {first}")
            lines += [f"     {line}" for line in rest]
        lines += [f"note: {note}" for note in self.notes]
        return [mask(line) for line in lines]


def validate(plan: Plan, backends: Backends) -> list[str]:
    """Run every check that needs no change to the host; raise on the first rejection."""
    notes: list[str] = []
    for action in plan.actions:
        if isinstance(action, WriteFile) and action.validate == "systemd-unit":
            assert backends.units is not None
            note = backends.units.verify_unit(backends.config, action.content)
            if note:
                notes.append(note)
        elif isinstance(action, InstallCaddyfile):
            assert backends.caddy is not None
            backends.caddy.validate(action.content)
    return notes


def apply(plan: Plan, backends: Backends) -> list[str]:
    """Validate, then run the actions in order. On a failure, the error says which step failed
    and that the steps before it were applied (each of them is complete: files are atomic)."""
    notes = validate(plan, backends)
    for number, action in enumerate(plan.actions, 1):
        try:
            action.apply(backends)
        except PreviewSlotsError as exc:
            done = f"steps 1-{number - 1} were applied; " if number > 1 else ""
            exc.message = (f"step {number} ({mask(action.describe()[0])}) failed: {exc.message}"
                           f" ({done}fix the cause and run provision again)")
            exc.args = (exc.message,)
            raise
    return notes
