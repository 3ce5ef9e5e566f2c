"""docs/runtime.md documents every flag of `provision`, every env file key and runtime setting."""

from __future__ import annotations

import argparse
from pathlib import Path

from preview_slots.cli.main import build_parser
from preview_slots.config import _SECTIONS
from preview_slots.runtime.envfile import CORE_KEYS

DOC = Path(__file__).resolve().parents[2] / "docs" / "runtime.md"


def provision_parser() -> argparse.ArgumentParser:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices["provision"]
            return found
    raise AssertionError("no provision command")


def test_every_provision_flag_is_documented() -> None:
    text = DOC.read_text()
    flags = [opt for action in provision_parser()._actions for opt in action.option_strings
             if opt.startswith("--") and opt != "--help" and action.help != argparse.SUPPRESS]
    assert set(flags) == {"--slot", "--dry-run"}
    for flag in flags:
        assert f"provision {flag}" in text or f"`{flag}" in text, flag


def test_every_env_file_key_is_documented() -> None:
    text = DOC.read_text()
    for key in CORE_KEYS:
        assert f"| `{key}` |" in text, key


def test_every_runtime_and_caddy_setting_is_documented() -> None:
    text = DOC.read_text()
    for section in ("runtime", "caddy"):
        for key in _SECTIONS[section]:
            assert f"`{section}.{key}`" in text, f"{section}.{key} is not in {DOC.name}"
