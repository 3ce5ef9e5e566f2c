"""Glue between allocation and the runtime: stop the slot's service before the swap, restart it
and wait until it answers through the proxy before the URL is handed out."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from preview_slots.config import Config, Slot
    from preview_slots.controlplane import Lease

StopHook = Callable[["Slot"], None]
ReadyHook = Callable[["Slot", "Lease"], None]


def readiness_hooks(config: Config) -> tuple[StopHook | None, ReadyHook | None]:
    """None, None when the config has no service manager (database-only use)."""
    if config.runtime.manager == "none":
        return None, None
    try:
        factory = importlib.import_module("preview_slots.runtime.factory")
    except ModuleNotFoundError:
        return None, None
    manager = factory.make_manager(config)

    def stop(slot: Slot) -> None:
        if config.runtime.stop_before_reset:
            manager.stop(slot)

    def ready(slot: Slot, lease: Lease) -> None:
        manager.restart(slot)
        try:
            health = importlib.import_module("preview_slots.health")
        except ModuleNotFoundError:
            return
        health.wait_until_routed_healthy(config, slot, manager, config.health.ready_timeout)

    return stop, ready


def prewarm_in_background(config: Config, slot_id: str, strategy: str | None,
                          seed_version: str | None, snapshot_version: str | None) -> None:
    """Prepare the slots' next databases (warm spares of this version) in a detached process, off
    the critical path of this command. Only when the config asks for it and is a file."""
    import sys

    from preview_slots.runner import spawn_detached

    cache = config.cache
    if not (cache.templates and cache.spares and cache.background_prewarm) or config.path is None:
        return
    version = seed_version if strategy == "seed" else snapshot_version
    if not version or strategy not in ("seed", "snapshot"):
        return
    # every slot, not only this one: the next allocation may get any free slot
    spawn_detached([sys.executable, "-m", "preview_slots", "--config", str(config.path.resolve()),
                    "prewarm", f"--{strategy}-version", version])
