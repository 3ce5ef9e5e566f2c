"""Health verdicts as a table for people and as JSON for programs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from preview_slots.health.model import (
    ALL_CHECKS,
    CheckName,
    CheckResult,
    CheckStatus,
    HealthReport,
    SlotHealth,
)


def _latency(seconds: float | None) -> str:
    if seconds is None:
        return ""
    ms = seconds * 1000
    return f"{ms:.0f}ms" if ms >= 10 else f"{ms:.1f}ms"


HTTP_CHECKS = (CheckName.DIRECT, CheckName.ROUTED)


def cell(result: CheckResult) -> str:
    """``ok 200 3.1ms``, ``FAIL 502 4ms``, ``FAIL``, ``ok RUNNING``, ``ok app_preview_1``, ``skip``."""
    if result.status is CheckStatus.SKIP:
        return "skip"
    parts = ["ok" if result.status is CheckStatus.OK else "FAIL"]
    if result.name in HTTP_CHECKS:
        if result.code is not None:
            parts.append(str(result.code))
            parts.append(_latency(result.latency))
    elif result.status is CheckStatus.OK and result.detail:
        parts.append(result.detail.split(" (")[0].split(",")[0])
    return " ".join(parts)


def table(slots: Sequence[SlotHealth]) -> str:
    """One row per slot, one column per check, then one line per failing check with its reason."""
    header = ["SLOT", "HOST", *(c.value.upper() for c in ALL_CHECKS), "VERDICT"]
    rows: list[list[str]] = [header]
    for health in slots:
        cells = []
        for name in ALL_CHECKS:
            result = health.check(name)
            cells.append(cell(result) if result is not None else "-")
        rows.append([health.slot, health.host, *cells,
                     "healthy" if health.healthy else "UNHEALTHY"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip()
             for row in rows]
    notes = [f"{health.slot} {result.name.value}: {result.reason}"
             + (f" [{result.target}]" if result.target else "")
             for health in slots for result in health.failing]
    if notes:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines)


def summary_line(report: HealthReport) -> str:
    bad = [s.slot for s in report.slots if not s.healthy]
    total = len(report.slots)
    if not bad:
        verdict = f"{total} of {total} slots healthy"
    else:
        verdict = f"{total - len(bad)} of {total} slots healthy; unhealthy: {', '.join(bad)}"
    tries = f", {report.attempts} attempts" if report.attempts > 1 else ""
    return f"{verdict} ({report.elapsed:.2f}s{tries})"


def as_json(report: HealthReport) -> dict[str, Any]:
    return report.to_dict()
