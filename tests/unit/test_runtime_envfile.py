"""Env files: systemd's EnvironmentFile syntax, escaping, refusals (case C-07), the slot's values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from preview_slots.config import build_config
from preview_slots.errors import ConfigError, RuntimeFailed
from preview_slots.redact import mask
from preview_slots.runtime import envfile
from tests.runtime_fixtures import HANDWRITTEN_ENV, HANDWRITTEN_EXPECTED

FORBIDDEN = {chr(c) for c in range(0x20) if chr(c) != "\t"} | {"\x7f"}
values = st.text(st.characters(blacklist_categories=["Cs"],
                               blacklist_characters="".join(FORBIDDEN)), max_size=40)
keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)


@given(st.dictionaries(keys, values, max_size=6))
def test_c07_render_then_parse_gives_back_every_value(env: dict[str, str]) -> None:
    assert envfile.parse(envfile.render(env, slot="p1")) == env


@pytest.mark.parametrize("value", [
    "two words", "$HOME and ${PATH}", "# not a comment", "it's \"quoted\" `x`", "C:\\dir\\n",
    "  padded  ", "a\tb", "grüße ✓", ";x", "", "\\", '"', "'", "$",
])
def test_c07_awkward_values_are_quoted_and_escaped(value: str) -> None:
    line = envfile.render({"K": value}, slot="p1").splitlines()[-1]
    assert line.startswith('K="') and line.endswith('"')
    assert envfile.parse(line) == {"K": value}


def test_simple_values_stay_bare() -> None:
    assert envfile.quote("3101") == "3101"
    assert envfile.quote("postgresql://u@h:5432/db") == "postgresql://u@h:5432/db"
    assert envfile.quote("a b") == '"a b"'
    assert envfile.quote("x$y") == '"x\\$y"'


def test_parse_follows_systemd_for_files_we_did_not_write() -> None:
    # tests/integration/test_runtime_systemd.py feeds the same text to a real systemd
    assert envfile.parse(HANDWRITTEN_ENV) == HANDWRITTEN_EXPECTED


@pytest.mark.parametrize(("value", "problem"), [
    ("one\ntwo", "newline"), ("one\rtwo", "carriage return"), ("nul\x00", "NUL"),
    ("esc\x1b[0m", "control character U+001B"), ("del\x7f", "U+007F"),
    ("\ud800", "UTF-8"),
])
def test_c07_values_that_cannot_round_trip_are_refused(value: str, problem: str) -> None:
    found = envfile.value_problem(value)
    assert found is not None and problem in found


def test_slot_environment_has_the_slot_values_then_extras() -> None:
    config = build_config({
        "database": {"url": "postgresql://app:pw-Secret-1@db.internal:5432/postgres"},
        "caddy": {"tls": "internal", "https_port": 8443},
        "env": {"API_TOKEN": "tok-123456", "GREETING": "hello world"},
        "slots": [{"id": "p1", "port": 3101, "database": "app_p1", "host": "p1.example.com",
                   "static_root": "/srv/p1", "env": {"GREETING": "per slot wins"}}],
    }, None)
    env = envfile.slot_environment(config, config.slots[0])
    assert list(env)[:6] == list(envfile.CORE_KEYS)
    assert env["DATABASE_URL"] == "postgresql://app:pw-Secret-1@db.internal:5432/app_p1"
    assert env["HOST"] == "127.0.0.1" and env["PORT"] == "3101"
    assert env["STATIC_ROOT"] == "/srv/p1" and env["PREVIEW_SLOT"] == "p1"
    assert env["PUBLIC_URL"] == "https://p1.example.com:8443"
    assert env["GREETING"] == "per slot wins"
    # secrets are registered: every log line and plan masks them
    assert "tok-123456" not in mask("token tok-123456 url " + env["DATABASE_URL"])
    assert "pw-Secret-1" not in mask(env["DATABASE_URL"])


def test_c11_configuration_cannot_override_the_slot_database() -> None:
    config = build_config({"env": {"DATABASE_URL": "postgresql://shared/db"},
                           "slots": [{"id": "p1", "port": 3101}]}, None)
    with pytest.raises(ConfigError, match=r"env\.DATABASE_URL: DATABASE_URL is set by"):
        envfile.slot_environment(config, config.slots[0])


def test_c07_control_characters_in_extras_are_refused_naming_the_key() -> None:
    config = build_config({"slots": [{"id": "p1", "port": 3101, "env": {"X": "a\x1bb"}}]}, None)
    with pytest.raises(ConfigError, match=r"slots\.p1\.env\.X: the value contains the control"):
        envfile.slot_environment(config, config.slots[0])


def test_public_url_follows_tls_and_ports() -> None:
    for caddy, url in (({"tls": "off", "http_port": 80}, "http://h.example.com"),
                       ({"tls": "auto"}, "https://h.example.com"),
                       ({"tls": "off", "http_port": 8080}, "http://h.example.com:8080")):
        config = build_config({"caddy": caddy,
                               "slots": [{"id": "p1", "port": 1, "host": "h.example.com"}]}, None)
        assert envfile.public_url(config, config.slots[0]) == url


def test_env_file_is_named_after_the_unit_instance(tmp_path: Path) -> None:
    config = build_config({"runtime": {"env_dir": str(tmp_path)},
                           "slots": [{"id": "p1", "port": 1, "unit": "shop-web@first.service"},
                                     {"id": "p2", "port": 2, "unit": "plain"}]}, None)
    assert envfile.env_path(config, config.slots[0]) == tmp_path / "first.env"
    assert envfile.env_path(config, config.slots[1]) == tmp_path / "p2.env"
    with pytest.raises(RuntimeFailed, match=r"first\.env is missing"):
        envfile.require_env_file(tmp_path, config.slots[0])


def test_c11_envexec_gives_exactly_the_file_and_refuses_without_it(tmp_path: Path) -> None:
    env_file = tmp_path / "p1.env"
    env_file.write_text(envfile.render({"DATABASE_URL": "postgresql://own/db", "X": "a $b"},
                                       slot="p1"))
    show = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]
    inherited = {**os.environ, "DATABASE_URL": "postgresql://shared/other", "PGHOST": "elsewhere",
                 "SUPERVISOR_PROCESS_NAME": "p1"}
    result = subprocess.run([sys.executable, "-m", "preview_slots.runtime.envexec",
                             str(env_file), "--", *show], env=inherited, capture_output=True,
                            text=True, check=True)
    env = json.loads(result.stdout)
    assert env["DATABASE_URL"] == "postgresql://own/db" and env["X"] == "a $b"
    assert "PGHOST" not in env and env["SUPERVISOR_PROCESS_NAME"] == "p1"

    env_file.unlink()
    result = subprocess.run([sys.executable, "-m", "preview_slots.runtime.envexec",
                             str(env_file), "--", *show], env=inherited, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 78 and result.stdout == ""
    assert "refusing to start" in result.stderr and str(env_file) in result.stderr
