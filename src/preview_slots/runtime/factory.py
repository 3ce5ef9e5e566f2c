"""``make_manager(config)``: the configured service manager behind the one interface."""

from __future__ import annotations

from preview_slots.config import Config, Slot
from preview_slots.runtime.base import ServiceManager, ServiceState


class NoManager:
    """``[runtime] manager = "none"``: services are someone else's business; every call is a
    no-op and the state says so."""

    name = "none"

    def state(self, slot: Slot) -> ServiceState:
        return ServiceState(unit=slot.unit, active=False, state="unmanaged",
                            detail='runtime.manager = "none"')

    def start(self, slot: Slot) -> None:
        return None

    def stop(self, slot: Slot) -> None:
        return None

    def restart(self, slot: Slot) -> None:
        return None

    def environment(self, slot: Slot) -> dict[str, str] | None:
        return None


def make_manager(config: Config) -> ServiceManager:
    """systemd, supervisord or nothing, as ``[runtime] manager`` says. ``stop``/``restart``
    block until done (supervisord: until the program is RUNNING again)."""
    if config.runtime.manager == "systemd":
        from preview_slots.runtime.systemd import SystemdManager

        return SystemdManager(config.runtime)
    if config.runtime.manager == "supervisor":
        from preview_slots.runtime.supervisor import SupervisorManager

        return SupervisorManager(config.runtime)
    return NoManager()
