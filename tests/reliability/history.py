"""A history checker: reads the append-only ``lease_events`` and says whether the lease history is
one a correct allocator could have produced.

Per slot, the intervals [granted, ended] of its leases must not overlap and their generations must
strictly increase in grant order; per run, at most one lease is live at any instant; a lease that
ended produces no later event (no ``ready`` or ``renewed`` after ``expired``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

TERMINAL = frozenset({"released", "expired", "failed", "superseded"})


@dataclass(frozen=True)
class Event:
    id: int
    at: datetime
    slot_id: str
    run_id: str
    lease_id: int
    generation: int
    event: str


@dataclass
class Interval:
    lease_id: int
    slot_id: str
    run_id: str
    generation: int
    start: datetime
    end: datetime | None  # None: still live at the end of the history

    def overlaps(self, other: Interval) -> bool:
        """Half-open [start, end): one lease ending at the instant the next starts is fine."""
        a_end = self.end or datetime.max.replace(tzinfo=self.start.tzinfo)
        b_end = other.end or datetime.max.replace(tzinfo=other.start.tzinfo)
        return self.start < b_end and other.start < a_end


@dataclass
class Report:
    leases: int = 0
    events: int = 0
    slot_overlaps: list[tuple[Interval, Interval]] = field(default_factory=list)
    run_overlaps: list[tuple[Interval, Interval]] = field(default_factory=list)
    generation_errors: list[str] = field(default_factory=list)
    after_end: list[Event] = field(default_factory=list)
    max_live: int = 0

    @property
    def ok(self) -> bool:
        return not (self.slot_overlaps or self.run_overlaps or self.generation_errors
                    or self.after_end)

    def describe(self) -> str:
        parts = [f"{len(self.slot_overlaps)} slot overlaps", f"{len(self.run_overlaps)} run overlaps",
                 f"{len(self.generation_errors)} generation errors",
                 f"{len(self.after_end)} events after a lease ended"]
        examples = [f"{a.slot_id}: lease {a.lease_id} ({a.run_id} g{a.generation}) and "
                    f"{b.lease_id} ({b.run_id} g{b.generation})" for a, b in self.slot_overlaps[:3]]
        examples += self.generation_errors[:3]
        examples += [f"{e.event} of lease {e.lease_id} after it ended" for e in self.after_end[:3]]
        return "; ".join(parts + examples)


def events_from_rows(rows: Iterable[Sequence[Any]]) -> list[Event]:
    """Rows of ``SELECT id, at, slot_id, run_id, lease_id, generation, event``."""
    return [Event(*row) for row in rows]


def load(cp_query: Any) -> list[Event]:
    """Read the history through a query function (``Env.cp``)."""
    return events_from_rows(cp_query(
        "SELECT id, at, slot_id, run_id, lease_id, generation, event FROM lease_events "
        "WHERE lease_id IS NOT NULL ORDER BY id"))


def intervals(events: Sequence[Event]) -> list[Interval]:
    by_lease: dict[int, Interval] = {}
    for e in sorted(events, key=lambda e: e.id):
        if e.event == "granted":
            by_lease[e.lease_id] = Interval(e.lease_id, e.slot_id, e.run_id, e.generation, e.at,
                                            None)
        elif e.event in TERMINAL and e.lease_id in by_lease and by_lease[e.lease_id].end is None:
            by_lease[e.lease_id].end = e.at
    return list(by_lease.values())


def check(events: Sequence[Event]) -> Report:
    report = Report(events=len(events))
    spans = intervals(events)
    report.leases = len(spans)
    for key, problems in (("slot_id", report.slot_overlaps), ("run_id", report.run_overlaps)):
        groups: dict[str, list[Interval]] = defaultdict(list)
        for span in spans:
            groups[getattr(span, key)].append(span)
        for group in groups.values():
            group.sort(key=lambda s: (s.start, s.lease_id))
            for i, current in enumerate(group):
                problems.extend((earlier, current) for earlier in group[:i]
                                if earlier.overlaps(current))
    per_slot: dict[str, list[Interval]] = defaultdict(list)
    for span in spans:
        per_slot[span.slot_id].append(span)
    for slot_id, group in per_slot.items():
        group.sort(key=lambda s: (s.start, s.lease_id))
        for before, after in pairwise(group):
            if after.generation <= before.generation:
                report.generation_errors.append(
                    f"{slot_id}: generation {after.generation} (lease {after.lease_id}) granted "
                    f"after generation {before.generation} (lease {before.lease_id})")
    ended: dict[int, int] = {}
    for e in sorted(events, key=lambda e: e.id):
        if e.lease_id in ended and e.event not in TERMINAL:
            report.after_end.append(e)
        if e.event in TERMINAL:
            ended.setdefault(e.lease_id, e.id)
    # the largest number of leases live at one instant, from the grant/end points
    points = sorted([(s.start, 1) for s in spans] + [(s.end, -1) for s in spans if s.end],
                    key=lambda p: (p[0], p[1]))
    live = 0
    for _, step in points:
        live += step
        report.max_live = max(report.max_live, live)
    return report
