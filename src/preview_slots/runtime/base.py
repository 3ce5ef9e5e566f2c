"""The small interface every service manager (systemd, supervisord) offers to the orchestration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from preview_slots.config import Slot


@dataclass(frozen=True)
class ServiceState:
    """What the service manager says about one slot's service."""

    unit: str
    active: bool  # running (systemd: ActiveState=active; supervisord: RUNNING)
    state: str  # the manager's own word: active/inactive/failed, RUNNING/STOPPED/BACKOFF...
    main_pid: int | None = None
    restarts: int | None = None
    detail: str = ""


class ServiceManager(Protocol):
    """systemd and supervisord behind one interface. Every method addresses one slot's service."""

    name: str

    def state(self, slot: Slot) -> ServiceState: ...

    def start(self, slot: Slot) -> None: ...

    def stop(self, slot: Slot) -> None: ...

    def restart(self, slot: Slot) -> None: ...

    def environment(self, slot: Slot) -> dict[str, str] | None:
        """The environment the running service actually has, when the manager can tell."""
        ...
