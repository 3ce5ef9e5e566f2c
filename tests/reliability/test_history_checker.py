"""The history checker must catch what it is there to catch (a checker that cannot fail proves
nothing): overlapping holders, a second live lease of a run, generations out of order, events
after a lease ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.reliability.history import Event, check

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def history(*rows: tuple[float, str, str, int, int, str]) -> list[Event]:
    """(seconds, slot, run, lease_id, generation, event) -> events in that order."""
    return [Event(i, T0 + timedelta(seconds=at), slot, run, lease, gen, event)
            for i, (at, slot, run, lease, gen, event) in enumerate(rows, 1)]


def test_a_correct_history_passes() -> None:
    report = check(history(
        (0, "p1", "a", 1, 1, "granted"), (1, "p1", "a", 1, 1, "ready"),
        (2, "p1", "a", 1, 1, "released"),
        (2, "p1", "b", 2, 2, "granted"),  # granted the instant the previous one ended: fine
        (3, "p2", "c", 3, 1, "granted"), (9, "p2", "c", 3, 1, "expired"),
        (9, "p2", "c", 4, 2, "granted"),  # the same run takes its slot over after expiry
        (10, "p1", "b", 2, 2, "superseded"), (10, "p1", "b", 5, 3, "granted"),
    ))
    assert report.ok, report.describe()
    assert report.leases == 5 and report.max_live == 2


def test_overlapping_holders_are_caught() -> None:
    report = check(history(
        (0, "p1", "a", 1, 1, "granted"),
        (1, "p1", "b", 2, 2, "granted"),  # a still holds p1
        (2, "p1", "a", 1, 1, "released"),
    ))
    assert not report.ok and len(report.slot_overlaps) == 1


def test_a_lease_never_ended_overlaps_everything_after_it() -> None:
    report = check(history((0, "p1", "a", 1, 1, "granted"), (50, "p1", "b", 2, 2, "granted")))
    assert len(report.slot_overlaps) == 1


def test_two_live_leases_of_one_run_are_caught() -> None:
    report = check(history((0, "p1", "a", 1, 1, "granted"), (1, "p2", "a", 2, 1, "granted")))
    assert len(report.run_overlaps) == 1 and not report.slot_overlaps


def test_generations_must_strictly_increase() -> None:
    report = check(history(
        (0, "p1", "a", 1, 5, "granted"), (1, "p1", "a", 1, 5, "released"),
        (2, "p1", "b", 2, 5, "granted"),
    ))
    assert report.generation_errors and not report.ok


def test_no_event_after_a_lease_ended() -> None:
    report = check(history(
        (0, "p1", "a", 1, 1, "granted"), (1, "p1", "a", 1, 1, "expired"),
        (2, "p1", "a", 1, 1, "ready"),  # a stale holder marked ready after expiry
    ))
    assert len(report.after_end) == 1 and not report.ok
