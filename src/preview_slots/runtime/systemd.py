"""systemd: the template unit ``<app>-web@.service`` and ``systemctl`` for each slot's instance.

The unit is rendered from ``[runtime]``; ``EnvironmentFile=`` has no ``-`` prefix, so a missing
or unreadable env file makes the start fail instead of running the application on defaults
(case C-11). ``systemctl`` is an argv from the config (``[runtime] systemctl``), so the same code
drives the host's systemd, one in a namespace (``nsenter ... systemctl``) or one behind a wrapper.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from preview_slots.config import Config, RuntimeSettings, Slot
from preview_slots.errors import CommandFailed, RuntimeFailed
from preview_slots.redact import mask
from preview_slots.runner import Result, run
from preview_slots.runtime.base import ServiceState
from preview_slots.runtime.command import exec_argv
from preview_slots.runtime.envfile import instance, require_env_file
from preview_slots.runtime.proc import host_pid_of, read_environ

UNIT_MODE = 0o644
SHOW_PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "Result", "UnitFileState",
                   "MainPID", "NRestarts", "InvocationID", "NeedDaemonReload")
ENABLED_STATES = frozenset({"enabled", "enabled-runtime", "static", "indirect", "generated",
                            "alias", "linked", "linked-runtime"})
_BARE_WORD = re.compile(r"[A-Za-z0-9_@+=:,./-]+")


def template_name(config: Config) -> str:
    return f"{config.runtime.app}-web@.service"


def unit_path(config: Config) -> Path:
    return config.runtime.unit_dir / template_name(config)


def service_name(slot: Slot) -> str:
    return slot.unit if slot.unit.endswith(".service") else f"{slot.unit}.service"


def _path_value(path: Path | str) -> str:
    """A path in a unit file: ``%`` would start a specifier."""
    return str(path).replace("%", "%%")


def quote_word(word: str) -> str:
    """One ExecStart= word, so that systemd passes exactly ``word`` (no specifier, no $VAR)."""
    if _BARE_WORD.fullmatch(word):
        return word
    escaped = (word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
               .replace("$", "$$").replace("\t", "\\t"))
    return f'"{escaped}"'


def render_unit(config: Config) -> str:
    rt = config.runtime
    env_file = _path_value(rt.env_dir) + "/%i.env"
    lines = [
        "# Managed by preview-slots (`preview-slots provision`); edits here are overwritten.",
        f"# One instance per preview slot, e.g. {rt.app}-web@preview1.service.",
        "[Unit]",
        f"Description={rt.app} preview slot %i",
        "After=network.target",
        "",
        "[Service]",
        "Type=simple",
        "# Mandatory (no '-'): without the slot's own env file the service must not start.",
        f"EnvironmentFile={env_file}",
        "ExecStart=" + " ".join(quote_word(w) for w in exec_argv(config)),
    ]
    if rt.user:
        lines.append(f"User={rt.user}")
    if rt.group:
        lines.append(f"Group={rt.group}")
    if rt.working_directory:
        lines.append(f"WorkingDirectory={_path_value(rt.working_directory)}")
    lines += [
        f"Restart={rt.restart}",
        "RestartSec=2",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class UnitStatus:
    """One instance as systemd sees it."""

    unit: str
    props: dict[str, str]

    @property
    def active(self) -> bool:
        return self.props.get("ActiveState") in ("active", "reloading")

    @property
    def enabled(self) -> bool:
        return self.props.get("UnitFileState", "") in ENABLED_STATES

    @property
    def loaded(self) -> bool:
        return self.props.get("LoadState") == "loaded"

    @property
    def needs_reload(self) -> bool:
        return self.props.get("NeedDaemonReload") == "yes"

    def as_state(self) -> ServiceState:
        pid = int(self.props.get("MainPID") or 0)
        restarts = self.props.get("NRestarts", "")
        detail = "/".join(filter(None, (self.props.get("SubState"), self.props.get("Result"))))
        return ServiceState(
            unit=self.unit, active=self.active, state=self.props.get("ActiveState", "unknown"),
            main_pid=pid or None, restarts=int(restarts) if restarts.isdigit() else None,
            detail=detail,
        )


class SystemdManager:
    """:class:`~preview_slots.runtime.base.ServiceManager` over ``systemctl``."""

    name = "systemd"

    def __init__(self, settings: RuntimeSettings, *, timeout: float = 120.0) -> None:
        self.settings = settings
        self.timeout = timeout

    # -- plumbing ------------------------------------------------------------------------------

    def _ctl(self, *args: str, what: str) -> Result:
        argv = [*self.settings.systemctl, *args]
        try:
            return run(argv, timeout=self.timeout, what="systemctl")
        except CommandFailed as exc:
            detail = exc.stderr_tail.splitlines()[-1] if exc.stderr_tail else exc.message
            raise RuntimeFailed(f"systemd could not {what}: {detail}") from exc

    def show(self, units: Sequence[str]) -> dict[str, UnitStatus]:
        if not units:
            return {}
        names = [u if u.endswith(".service") else f"{u}.service" for u in units]
        result = self._ctl("show", "--property=" + ",".join(SHOW_PROPERTIES), "--", *names,
                           what="report unit states (is systemd running? For a systemd in a "
                           "namespace or behind a wrapper set [runtime] systemctl)")
        blocks = [b for b in result.stdout.strip("\n").split("\n\n")]
        out: dict[str, UnitStatus] = {}
        for name, block in zip(names, blocks, strict=False):
            props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            out[name] = UnitStatus(name, props)
        for name in names:
            out.setdefault(name, UnitStatus(name, {}))
        return out

    def status(self, slots: Sequence[Slot]) -> dict[str, UnitStatus]:
        """Keyed by slot id."""
        shown = self.show([service_name(s) for s in slots])
        return {s.id: shown[service_name(s)] for s in slots}

    # -- ServiceManager ------------------------------------------------------------------------

    def state(self, slot: Slot) -> ServiceState:
        return self.show([service_name(slot)])[service_name(slot)].as_state()

    def start(self, slot: Slot) -> None:
        require_env_file(self.settings.env_dir, slot)
        unit = service_name(slot)
        if self.show([unit])[unit].props.get("ActiveState") == "failed":
            self._ctl("reset-failed", "--", unit, what=f"reset {unit}")
        self._ctl("start", "--", unit, what=f"start {unit} (see `journalctl -u {unit}`)")

    def stop(self, slot: Slot) -> None:
        """Stop the slot's service; one systemd does not know is stopped already."""
        unit = service_name(slot)
        result = run([*self.settings.systemctl, "stop", "--", unit], timeout=self.timeout,
                     check=False, what="systemctl")
        if result.returncode == 0 or "not loaded" in result.stderr:
            return
        detail = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        raise RuntimeFailed(f"systemd could not stop {unit}: {mask(detail)}")

    def restart(self, slot: Slot) -> None:
        require_env_file(self.settings.env_dir, slot)
        unit = service_name(slot)
        self._ctl("restart", "--", unit, what=f"restart {unit} (see `journalctl -u {unit}`)")

    def environment(self, slot: Slot) -> dict[str, str] | None:
        pid = self.host_pid(slot)
        return read_environ(pid) if pid else None

    def host_pid(self, slot: Slot) -> int | None:
        """The unit's MainPID as seen from here (systemd may run in another PID namespace)."""
        unit = service_name(slot)
        pid = int(self.show([unit])[unit].props.get("MainPID") or 0)
        return host_pid_of(pid, unit) if pid else None

    # -- provisioning --------------------------------------------------------------------------

    def daemon_reload(self) -> None:
        self._ctl("daemon-reload", what="reload its unit files")

    def enable(self, slot: Slot, *, now: bool) -> None:
        unit = service_name(slot)
        args = ["enable", "--now", "--", unit] if now else ["enable", "--", unit]
        self._ctl(*args, what=f"enable {unit} (see `journalctl -u {unit}`)")

    def verify_unit(self, config: Config, content: str) -> str | None:
        """Check the rendered template with ``systemd-analyze verify`` (as an instance of the
        first slot). Raises RuntimeFailed when it is rejected; returns a note when the tool is
        not installed, else None."""
        analyze = list(self.settings.systemd_analyze)
        if shutil.which(analyze[0]) is None:
            return f"{analyze[0]} not found: the unit was not verified"
        name = template_name(config)
        probe = name.replace("@.", f"@{instance(config.slots[0])}.", 1)
        with tempfile.TemporaryDirectory(prefix="preview-slots-verify-") as folder:
            (Path(folder) / name).write_text(content, encoding="utf-8")
            result = run([*analyze, "verify", "--", str(Path(folder) / probe)],
                         timeout=60, check=False, what="systemd-analyze")
            problems = [line.replace(folder + "/", "") for line in
                        (result.stderr + result.stdout).splitlines() if folder in line]
        if result.returncode != 0 or problems:
            first = problems[0] if problems else (result.stderr.strip().splitlines() or ["?"])[-1]
            raise RuntimeFailed(f"the rendered unit {name} fails `systemd-analyze verify`: "
                                f"{first} (check [runtime] exec_start, user, group, "
                                "working_directory); nothing was installed")
        return None
