"""docs/health.md documents every flag of `health`, every check and every readiness check."""

from __future__ import annotations

import argparse
from pathlib import Path

from preview_slots.cli.main import build_parser
from preview_slots.health import ALL_CHECKS, READINESS_CHECKS

DOC = Path(__file__).resolve().parents[2] / "docs" / "health.md"


def health_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices["health"]
            return found
    raise AssertionError("no health command")


def test_every_flag_is_documented() -> None:
    text = DOC.read_text()
    flags = [opt for action in health_parser()._actions for opt in action.option_strings
             if opt.startswith("--") and opt != "--help" and action.help != argparse.SUPPRESS]
    assert {"--slot", "--json", "--timeout", "--wait", "--skip"} <= set(flags)
    for flag in flags:
        assert f"`{flag}" in text, f"{flag} is not documented in {DOC.name}"


def test_every_check_is_documented() -> None:
    text = DOC.read_text()
    for check in ALL_CHECKS:
        assert f"| `{check.value}` |" in text, check
    readiness = ", ".join(f"`{c.value}`" for c in READINESS_CHECKS[:-1])
    assert f"{readiness} and `{READINESS_CHECKS[-1].value}`" in text
