"""What a health check found: one result per check, one verdict per slot, one report per run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from preview_slots.errors import Unhealthy


class CheckStatus(StrEnum):
    OK = "ok"
    FAIL = "fail"
    SKIP = "skip"  # not applicable or turned off; never makes a slot unhealthy


class CheckName(StrEnum):
    DIRECT = "direct"
    ROUTED = "routed"
    SERVICE = "service"
    DATABASE = "database"
    PROVENANCE = "provenance"


ALL_CHECKS: tuple[CheckName, ...] = tuple(CheckName)
# What ``allocate`` waits for before it hands out a URL (provenance is what allocate is writing).
READINESS_CHECKS: tuple[CheckName, ...] = (
    CheckName.DIRECT, CheckName.ROUTED, CheckName.SERVICE, CheckName.DATABASE,
)


@dataclass(frozen=True)
class CheckResult:
    """One check of one slot.

    ``reason`` says why a check failed or was skipped, in a few words; ``detail`` says what a
    passing check saw. ``code`` is the HTTP status when the check made a request, ``latency`` its
    duration in seconds, ``target`` what was asked (URL and Host, unit, table).
    """

    name: CheckName
    status: CheckStatus
    code: int | None = None
    latency: float | None = None
    reason: str = ""
    detail: str = ""
    target: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is not CheckStatus.FAIL

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "code": self.code,
            "latency_ms": None if self.latency is None else round(self.latency * 1000, 1),
            "reason": self.reason or None,
            "detail": self.detail or None,
            "target": self.target or None,
            **({"data": dict(self.data)} if self.data else {}),
        }


@dataclass(frozen=True)
class SlotHealth:
    slot: str
    host: str
    port: int
    checks: tuple[CheckResult, ...]

    @property
    def healthy(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failing(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.ok)

    def check(self, name: CheckName | str) -> CheckResult | None:
        return next((c for c in self.checks if c.name == name), None)

    def summary(self) -> str:
        """One line: ``healthy`` or the failing checks with their reasons."""
        if self.healthy:
            return "healthy"
        return "; ".join(f"{c.name}: {c.reason}" for c in self.failing)

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "host": self.host,
            "port": self.port,
            "healthy": self.healthy,
            "checks": {c.name.value: c.to_dict() for c in self.checks},
        }


@dataclass(frozen=True)
class HealthReport:
    slots: tuple[SlotHealth, ...]
    elapsed: float
    attempts: int = 1

    @property
    def healthy(self) -> bool:
        return all(s.healthy for s in self.slots)

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "elapsed_ms": round(self.elapsed * 1000, 1),
            "attempts": self.attempts,
            "slots": [s.to_dict() for s in self.slots],
        }


class HealthTimeout(Unhealthy):
    """A slot did not become healthy in time. ``health`` is the last result, ``checks`` the
    names of the checks that still failed (the first one is named in the message)."""

    def __init__(self, health: SlotHealth, waited: float) -> None:
        failing = health.failing
        names = ", ".join(c.name.value for c in failing) or "none"
        super().__init__(
            f"slot {health.slot} is not healthy after {waited:.1f}s ({names} check failed: "
            f"{health.summary()}); see `preview-slots health --slot {health.slot}`"
        )
        self.health = health
        self.slot = health.slot
        self.checks = tuple(c.name.value for c in failing)
        self.waited = waited
