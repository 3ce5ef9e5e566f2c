"""``provision``: bring env files, services and Caddy routes in line with the configuration.

:func:`build_plan` reads what is on the host (files under the managed paths, the service
manager's view of each slot's service) and compares it with what the configuration renders;
every difference becomes a typed action. Rules:

* a slot's service is restarted exactly when its unit (the shared template) or program
  definition, or its own env file, changed: a reload would not re-read an env file (C-08);
* ``daemon-reload`` comes before any start or restart when the unit changed;
* the Caddyfile is validated, loaded into Caddy, then installed; a failure keeps the old one (C-09);
* nothing changed: an empty plan, "no changes", nothing restarted.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from preview_slots.config import Config, Slot
from preview_slots.errors import PreviewSlotsError, RuntimeFailed
from preview_slots.redact import mask
from preview_slots.runtime import envfile, files
from preview_slots.runtime.caddy import CADDYFILE_MODE, Caddy, render_caddyfile
from preview_slots.runtime.plan import (
    Action,
    Backends,
    CheckServices,
    DaemonReload,
    EnableService,
    InstallCaddyfile,
    MakeDirectory,
    Plan,
    RestartService,
    StartService,
    UpdatePrograms,
    WriteFile,
    apply,
    validate,
)


@dataclass(frozen=True)
class ProvisionResult:
    plan: Plan
    applied: bool
    seconds: float
    notes: tuple[str, ...] = ()
    problem: str | None = None  # dry run: why applying would fail validation

    def lines(self) -> list[str]:
        out = self.plan.render()
        out += [mask(f"note: {note}") for note in self.notes]
        if self.plan.empty:
            return out
        if self.applied:
            out.append(f"applied {len(self.plan.actions)} actions in {self.seconds:.2f}s")
        else:
            out.append("dry run: nothing was changed")
        return out


def make_backends(config: Config) -> Backends:
    from preview_slots.runtime.factory import make_manager

    backends = Backends(config=config)
    manager = config.runtime.manager
    if manager == "systemd":
        from preview_slots.runtime.systemd import SystemdManager

        systemd = SystemdManager(config.runtime)
        backends.services, backends.units, backends.processes = systemd, systemd, systemd
    elif manager == "supervisor":
        from preview_slots.runtime.supervisor import SupervisorManager

        supervisor = SupervisorManager(config.runtime)
        backends.services, backends.programs = supervisor, supervisor
        backends.processes = supervisor
    else:
        backends.services = make_manager(config)
    if config.caddy.enabled:
        backends.caddy = Caddy(config.caddy)
    return backends


def env_file_owner(config: Config) -> tuple[int | None, int | None, int]:
    """(uid, gid, mode) for env files: 0640 with the service's group, else 0600."""
    rt = config.runtime
    gid = files.lookup_group(rt.group)
    if gid is None and rt.manager == "supervisor" and rt.user:
        user = files.lookup_user(rt.user)
        gid = user.pw_gid if user else None
    uid = 0 if os.geteuid() == 0 else None
    return uid, gid, (0o640 if gid is not None else 0o600)


def _select(config: Config, slot_ids: Sequence[str] | None) -> tuple[Slot, ...]:
    if not slot_ids:
        return config.slots
    return tuple(config.slot(s) for s in dict.fromkeys(slot_ids))


def _file_action(path: Path, content: str, *, mode: int, uid: int | None, gid: int | None,
                 what: str, validate: str | None = None) -> WriteFile | None:
    existing = files.read_existing(path)
    if existing is not None and existing.content == content:
        if files.meta_matches(existing, mode, uid, gid):
            return None
        return WriteFile(path, content, mode, uid, gid, existing.content, what,
                         content_changed=False)
    return WriteFile(path, content, mode, uid, gid, existing.content if existing else None, what,
                     validate=validate)


def build_plan(config: Config, slot_ids: Sequence[str] | None = None, *,
               backends: Backends | None = None, python: str | None = None,
               strict: bool = True) -> Plan:
    """The actions that would bring the host in line with ``config`` for ``slot_ids`` (default:
    all). Reads only. ``strict=False`` (dry-run): an unreachable service manager is a note, and
    the plan assumes nothing runs."""
    backends = backends or make_backends(config)
    slots = _select(config, slot_ids)
    rt = config.runtime
    actions: list[Action] = []
    notes: list[str] = []

    # static roots, with the service's owner when missing
    user = files.lookup_user(rt.user)
    svc_uid = user.pw_uid if user else None
    svc_gid = files.lookup_group(rt.group)
    if svc_gid is None and user is not None:
        svc_gid = user.pw_gid
    for slot in slots:
        if not slot.static_root.exists():
            actions.append(MakeDirectory(slot.static_root, files.DIR_MODE, svc_uid, svc_gid,
                                         f"static root of {slot.id}"))

    # env files
    env_uid, env_gid, env_mode = env_file_owner(config)
    env_changed: set[str] = set()
    for slot in slots:
        env = envfile.slot_environment(config, slot)
        action = _file_action(envfile.env_path(config, slot),
                              envfile.render(env, slot=slot.id), mode=env_mode, uid=env_uid,
                              gid=env_gid, what=f"env file of {slot.id}")
        if action is not None:
            actions.append(action)
            if action.content_changed:
                env_changed.add(slot.id)

    # services
    touched: list[Slot] = []
    if rt.manager == "systemd":
        touched = _plan_systemd(config, slots, backends, env_changed, actions, notes, strict)
    elif rt.manager == "supervisor":
        touched = _plan_supervisor(config, slots, backends, env_changed, actions, notes, strict,
                                   python or sys.executable)
    if touched:
        expected = tuple((s.id, config.database.slot_url(s.database).url) for s in touched)
        actions.append(CheckServices(tuple(touched), expected))

    # Caddy
    if config.caddy.enabled:
        path = config.caddy.caddyfile
        content = render_caddyfile(config)
        existing = files.read_existing(path)
        if existing is None or existing.content != content:
            actions.append(InstallCaddyfile(path, content, existing.content if existing else None,
                                            CADDYFILE_MODE, config.caddy.admin))
    return Plan(tuple(actions), rt.manager, tuple(s.id for s in slots), tuple(notes))


def _plan_systemd(config: Config, slots: tuple[Slot, ...], backends: Backends,
                  env_changed: set[str], actions: list[Action], notes: list[str],
                  strict: bool) -> list[Slot]:
    from preview_slots.runtime.systemd import UNIT_MODE, UnitStatus, render_unit
    from preview_slots.runtime.systemd import unit_path as template_path

    if backends.units is None:
        raise RuntimeError("bug: provisioning for systemd without a systemd backend")
    uid = 0 if os.geteuid() == 0 else None
    unit = _file_action(template_path(config), render_unit(config), mode=UNIT_MODE, uid=uid,
                        gid=uid, what="systemd template unit", validate="systemd-unit")
    unit_changed = unit is not None and unit.content_changed
    if unit is not None:
        actions.append(unit)
    # the template is shared: when it changes, every running instance restarts, selected or not
    everyone = config.slots if unit_changed else slots
    try:
        status = backends.units.status(everyone)
    except PreviewSlotsError as exc:
        if strict:
            raise
        notes.append(f"{exc.message}; the plan assumes no instance runs")
        status = {s.id: UnitStatus(s.unit, {}) for s in everyone}
    stale = any(st.needs_reload or (not st.loaded and st.props) for st in status.values())
    if unit_changed or stale:
        actions.append(DaemonReload("unit changed" if unit_changed else
                                    "systemd has not loaded the unit file on disk"))
    touched: list[Slot] = []
    selected = {s.id for s in slots}
    for slot in everyone:
        st = status[slot.id]
        why = ", ".join(filter(None, ("unit changed" if unit_changed else "",
                                      "env file changed" if slot.id in env_changed else "")))
        if slot.id not in selected:
            if st.active:
                actions.append(RestartService(slot, why))
                touched.append(slot)
            continue
        if not st.enabled:
            actions.append(EnableService(slot, start=not st.active))
        if st.active and why:
            actions.append(RestartService(slot, why))
        elif not st.active and st.enabled:
            actions.append(StartService(slot, f"it is {st.props.get('ActiveState', 'unknown')}"))
        if why or not st.active or not st.enabled:
            touched.append(slot)
    return touched


def _plan_supervisor(config: Config, slots: tuple[Slot, ...], backends: Backends,
                     env_changed: set[str], actions: list[Action], notes: list[str],
                     strict: bool, python: str) -> list[Slot]:
    from preview_slots.runtime.supervisor import (
        PROGRAM_MODE,
        ProgramStatus,
        program_name,
        program_path,
        render_program,
    )

    if backends.programs is None:
        raise RuntimeError("bug: provisioning for supervisord without a supervisord backend")
    try:
        status = backends.programs.status(slots)
    except PreviewSlotsError as exc:
        if strict:
            raise
        notes.append(f"{exc.message}; the plan assumes no program is loaded")
        status = {s.id: ProgramStatus(program_name(s), None) for s in slots}
    uid = 0 if os.geteuid() == 0 else None
    update: list[Slot] = []
    later: list[Action] = []
    touched: list[Slot] = []
    for slot in slots:
        st = status[slot.id]
        action = _file_action(program_path(config, slot), render_program(config, slot,
                              python=python), mode=PROGRAM_MODE, uid=uid, gid=uid,
                              what=f"supervisord program of {slot.id}")
        if action is not None:
            actions.append(action)
        if (action is not None and action.content_changed) or not st.loaded:
            update.append(slot)
        elif slot.id in env_changed and (st.active or st.statename == "STARTING"):
            later.append(RestartService(slot, "env file changed"))
        elif st.statename == "STARTING":
            continue  # supervisord is starting it with the current definition and env file
        elif not st.active:
            later.append(StartService(slot, f"it is {st.statename}"))
        else:
            continue
        touched.append(slot)
    if update:
        actions.append(UpdatePrograms(tuple(update)))
    actions += later
    return touched


def provision(config: Config, slot_ids: Sequence[str] | None = None, *,
              dry_run: bool = False, backends: Backends | None = None) -> ProvisionResult:
    """Build the plan; unless ``dry_run``, apply it. Raises the first failure (a PreviewSlotsError
    naming the step)."""
    started = time.monotonic()
    backends = backends or make_backends(config)
    plan = build_plan(config, slot_ids, backends=backends, strict=not dry_run)
    if plan.empty:
        return ProvisionResult(plan, False, time.monotonic() - started)
    if dry_run:  # validation writes only to a private temporary folder
        try:
            notes = validate(plan, backends)
        except PreviewSlotsError as exc:
            return ProvisionResult(plan, False, time.monotonic() - started, (), exc.message)
        return ProvisionResult(plan, False, time.monotonic() - started, tuple(notes))
    try:
        notes = apply(plan, backends)
    except OSError as exc:  # a file system error outside the helpers' own translation
        raise RuntimeFailed(f"provision failed: {exc}") from exc
    return ProvisionResult(plan, True, time.monotonic() - started, tuple(notes))
