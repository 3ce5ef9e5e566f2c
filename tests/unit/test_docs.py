"""The README is part of the code: its command table, exit codes and config keys follow the code."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from preview_slots.cli.main import build_parser
from preview_slots.config import _SECTIONS, load_config
from preview_slots.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def commands() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
                    if nested:
                        walk(sub, [*prefix, name])
                    else:
                        found[" ".join([*prefix, name])] = [
                            o for a in sub._actions for o in a.option_strings
                            if o.startswith("--") and o not in ("--help", "--config")]

    walk(build_parser(), [])
    return found


def test_every_command_and_flag_is_in_the_readme() -> None:
    for command, flags in commands().items():
        group = command.split()[0]
        assert f"`{command}" in README or f"`{group} " in README, f"README lacks {command}"
        for flag in flags:
            assert flag in README, f"README lacks {command} {flag}"


def test_exit_codes_table_matches_the_code() -> None:
    table = dict(re.findall(r"^\| (\d+) \| (.+) \|$", README, re.M))
    assert {int(k) for k in table} == set(EXIT_CODES)


def test_every_config_key_is_documented() -> None:
    for section, keys in _SECTIONS.items():
        if section == "env":
            assert "`[env]`" in README
            continue
        rows = [ln for ln in README.splitlines()
                if ln.startswith("| `[[slots]]" if section == "slots" else f"| `[{section}]")]
        for key in keys:
            assert any(re.search(rf"\b{key}\b", row) for row in rows), \
                f"README's configuration table lacks {section}.{key}"


def test_seed_scripts_exist_with_the_seed_names() -> None:
    for name in ("preview-slots-provision.sh", "preview-slots-health-check.sh",
                 "preview-db-reset.sh", "preview-db-seed.sh", "preview-db-reset-and-seed.sh",
                 "preview-slot-allocate.sh"):
        assert (ROOT / "scripts" / name).is_file(), name
        assert f"scripts/{name}" in README


def test_example_config_loads() -> None:
    config = load_config(ROOT / "examples" / "preview-slots.toml")
    assert [s.database for s in config.slots] == ["app_preview_1", "app_preview_2", "app_preview_3"]
