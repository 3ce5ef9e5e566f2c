"""Slot verdicts, the --wait loop under a controlled clock, rendering and CI outputs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from preview_slots.ci import github_output_lines, write_github_output
from preview_slots.config import Slot, build_config
from preview_slots.errors import OperationFailed, Unhealthy, UsageError
from preview_slots.health import (
    ALL_CHECKS,
    CheckName,
    CheckResult,
    CheckStatus,
    HealthReport,
    HealthTimeout,
    SlotHealth,
    as_json,
    summary_line,
    table,
)
from preview_slots.health.engine import Round, retry_rounds

CONFIG = build_config({}, None)


def health(slot: str, **statuses: CheckStatus) -> SlotHealth:
    checks = []
    for name in ALL_CHECKS:
        status = statuses.get(name.value, CheckStatus.OK)
        checks.append(CheckResult(
            name, status, code=200 if name in (CheckName.DIRECT, CheckName.ROUTED) else None,
            latency=0.0123, reason="" if status is CheckStatus.OK else f"{name.value} broke",
            detail="200" if status is CheckStatus.OK else "", target=f"{name.value}-target",
        ))
    return SlotHealth(slot=slot, host=f"{slot}.example.com", port=3101, checks=tuple(checks))


def test_skip_does_not_make_a_slot_unhealthy() -> None:
    assert health("preview1", provenance=CheckStatus.SKIP).healthy
    bad = health("preview1", routed=CheckStatus.FAIL, database=CheckStatus.FAIL)
    assert not bad.healthy
    assert [c.name for c in bad.failing] == [CheckName.ROUTED, CheckName.DATABASE]
    assert bad.summary() == "routed: routed broke; database: database broke"


def test_health_timeout_names_the_failing_checks() -> None:
    exc = HealthTimeout(health("preview2", routed=CheckStatus.FAIL), 30.0)
    assert isinstance(exc, Unhealthy) and exc.exit_code == 1
    assert exc.checks == ("routed",) and exc.slot == "preview2"
    assert exc.message.startswith("slot preview2 is not healthy after 30.0s (routed check "
                                  "failed: routed: routed broke)")


def test_table_has_one_row_per_slot_and_one_note_per_failure() -> None:
    text = table([health("preview1"), health("preview2", routed=CheckStatus.FAIL,
                                                provenance=CheckStatus.SKIP)])
    lines = text.splitlines()
    assert lines[0].split() == ["SLOT", "HOST", "DIRECT", "ROUTED", "SERVICE", "DATABASE",
                                "PROVENANCE", "VERDICT"]
    assert lines[1].startswith("preview1") and lines[1].endswith("healthy")
    assert "ok 200 12ms" in lines[1]
    assert "FAIL 200 12ms" in lines[2] and "skip" in lines[2] and lines[2].endswith("UNHEALTHY")
    assert lines[-1] == "preview2 routed: routed broke [routed-target]"
    # columns line up
    assert lines[1].index("preview1.example.com") == lines[0].index("HOST")


def test_summary_and_json() -> None:
    report = HealthReport(slots=(health("preview1"), health("preview3", service=CheckStatus.FAIL)),
                          elapsed=0.25, attempts=3)
    assert summary_line(report) == "1 of 2 slots healthy; unhealthy: preview3 (0.25s, 3 attempts)"
    data = json.loads(json.dumps(as_json(report)))
    assert data["healthy"] is False and data["attempts"] == 3 and data["elapsed_ms"] == 250.0
    service = data["slots"][1]["checks"]["service"]
    assert service == {"status": "fail", "code": None, "latency_ms": 12.3,
                       "reason": "service broke", "detail": None, "target": "service-target"}
    assert set(data["slots"][0]["checks"]) == {c.value for c in ALL_CHECKS}


# -- the --wait loop, with time under control ---------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


Calls = list[tuple[list[str], float]]


def scripted(times: FakeTime, healthy_from: dict[str, float]) -> tuple[Round, Calls]:
    """A round function: slot X turns healthy once the clock passes healthy_from[X]."""
    calls: Calls = []

    def one_round(pending: Sequence[Slot], timeout: float) -> tuple[SlotHealth, ...]:
        calls.append(([s.id for s in pending], timeout))
        return tuple(
            health(s.id) if times.now >= healthy_from.get(s.id, 0)
            else health(s.id, routed=CheckStatus.FAIL) for s in pending
        )

    return one_round, calls


def test_wait_backs_off_and_rechecks_only_unhealthy_slots() -> None:
    times = FakeTime()
    one_round, calls = scripted(times, {"preview2": 101.2})
    report = retry_rounds(CONFIG.slots, one_round, wait=10, timeout=5, clock=times.clock,
                          sleep=times.sleep)
    assert report.healthy and report.attempts == 4
    assert times.sleeps == [0.25, 0.5, 1.0]
    assert calls[0][0] == ["preview1", "preview2", "preview3"]
    assert [c[0] for c in calls[1:]] == [["preview2"]] * 3
    assert report.elapsed == pytest.approx(1.75)


def test_wait_stops_at_the_deadline_and_shrinks_the_last_timeout() -> None:
    times = FakeTime()
    one_round, calls = scripted(times, {"preview3": 10_000})
    attempts: list[int] = []
    report = retry_rounds(CONFIG.slots, one_round, wait=3, timeout=5, clock=times.clock,
                          sleep=times.sleep, on_attempt=lambda n, seen: attempts.append(n))
    assert not report.healthy
    assert sum(times.sleeps) == pytest.approx(3.0)
    assert times.sleeps == [0.25, 0.5, 1.0, 1.25]
    assert report.elapsed == pytest.approx(3.0)
    assert calls[1][1] == 2.75 and calls[-1][1] == 0.2  # never much past the deadline
    assert attempts == [1, 2, 3, 4, 5]
    slots = {h.slot: h for h in report.slots}
    assert slots["preview1"].healthy and not slots["preview3"].healthy


def test_no_wait_means_one_round() -> None:
    times = FakeTime()
    one_round, calls = scripted(times, {"preview1": 10_000})
    report = retry_rounds(CONFIG.slots, one_round, wait=0, timeout=5, clock=times.clock,
                          sleep=times.sleep)
    assert report.attempts == 1 and len(calls) == 1 and times.sleeps == []


def test_backoff_caps_at_two_seconds() -> None:
    times = FakeTime()
    one_round, _ = scripted(times, {"preview1": 10_000})
    retry_rounds(CONFIG.slots[:1], one_round, wait=12, timeout=5, clock=times.clock,
                 sleep=times.sleep)
    assert max(times.sleeps) == 2.0
    assert times.sleeps[:5] == [0.25, 0.5, 1.0, 2.0, 2.0]


# -- CI outputs ------------------------------------------------------------------------------


def test_github_output_appends_lines(tmp_path: Path) -> None:
    out = tmp_path / "github_output"
    out.write_text("earlier=1\n")
    write_github_output(out, {"slot": "preview2", "url": "https://preview2.example.com",
                              "db_name": "app_preview_2", "reset_id": 17})
    assert out.read_text() == ("earlier=1\nslot=preview2\nurl=https://preview2.example.com\n"
                               "db_name=app_preview_2\nreset_id=17\n")


@pytest.mark.parametrize("value", ["a\nurl=https://evil", "a\r", "a\x00b"])
def test_github_output_refuses_line_breaks(tmp_path: Path, value: str) -> None:
    out = tmp_path / "github_output"
    with pytest.raises(UsageError, match="line break"):
        write_github_output(out, {"slot": "preview1", "url": value})
    assert not out.exists()  # nothing written, not even the good line


def test_github_output_refuses_bad_keys_and_unwritable_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not allowed"):
        github_output_lines({"a=b": "x"})
    with pytest.raises(OperationFailed, match="cannot write the CI output file"):
        write_github_output(tmp_path / "missing" / "out", {"slot": "preview1"})


def test_cells_are_short() -> None:
    from preview_slots.health.render import cell

    assert cell(CheckResult(CheckName.DIRECT, CheckStatus.OK, code=200, latency=0.0031)) == \
        "ok 200 3.1ms"
    assert cell(CheckResult(CheckName.ROUTED, CheckStatus.FAIL, code=502, latency=0.04)) == \
        "FAIL 502 40ms"
    assert cell(CheckResult(CheckName.DIRECT, CheckStatus.FAIL, latency=0.001)) == "FAIL"
    assert cell(CheckResult(CheckName.SERVICE, CheckStatus.OK,
                            detail="RUNNING, pid 42, 0 restarts")) == "ok RUNNING"
    assert cell(CheckResult(CheckName.DATABASE, CheckStatus.OK, code=200,
                            detail="app_preview_1")) == "ok app_preview_1"
    assert cell(CheckResult(CheckName.PROVENANCE, CheckStatus.OK,
                            detail="seed v1 (run pr-12, 2026-01-02T03:04:05+00:00)")) == \
        "ok seed v1"
    assert cell(CheckResult(CheckName.PROVENANCE, CheckStatus.SKIP, reason="x")) == "skip"


def test_health_config_keys() -> None:
    from preview_slots.errors import ConfigError

    config = build_config({"health": {"ready_timeout": "2m", "database_path": "/health/db",
                                      "timeout": "750ms"}}, None)
    assert config.health.ready_timeout == 120.0 and config.health.timeout == 0.75
    assert config.health.database_path == "/health/db"
    assert build_config({}, None).health.ready_timeout == 30.0
    with pytest.raises(ConfigError, match=r"health\.database_path: must start with /"):
        build_config({"health": {"database_path": "db"}}, None)


def test_targets_never_name_public_dns() -> None:
    from preview_slots.health import direct_target, routed_target

    slot = CONFIG.slot("preview1")
    assert direct_target(CONFIG, slot) == "http://127.0.0.1:3101/health"
    assert routed_target(CONFIG, slot) == \
        "https://127.0.0.1:443/health (Host preview1.example.com, SNI preview1.example.com)"
    v6 = build_config({"caddy": {"proxy_address": "::1", "tls": "off", "http_port": 8080}}, None)
    assert routed_target(v6, slot) == "http://[::1]:8080/health (Host preview1.example.com)"
