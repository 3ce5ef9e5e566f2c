from __future__ import annotations

from pathlib import Path

import pytest

from preview_slots.config import build_config, load_config, validate_run_id
from preview_slots.durations import parse_duration
from preview_slots.errors import ConfigError, UsageError


def test_defaults_reproduce_the_seed_slot_table() -> None:
    config = build_config({}, None)
    table = [(s.id, s.host, s.unit, s.port, str(s.static_root), s.database) for s in config.slots]
    assert table == [
        ("preview1", "preview1.example.com", "ouroboros-web@preview1", 3101,
         "/srv/oroboros/infra/web-preview-1", "app_preview_1"),
        ("preview2", "preview2.example.com", "ouroboros-web@preview2", 3102,
         "/srv/oroboros/infra/web-preview-2", "app_preview_2"),
        ("preview3", "preview3.example.com", "ouroboros-web@preview3", 3103,
         "/srv/oroboros/infra/web-preview-3", "app_preview_3"),
    ]
    assert config.lease.ttl == 7200
    assert config.caddy.caddyfile.parts[-3:] == ("infra", "caddy", "Caddyfile")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "key", "words"), [
    ("[lease]\nttll = '1h'\n", "lease.ttll", "unknown key"),
    ("[bogus]\n", "bogus", "unknown section"),
    ("[lease]\nttl = 'soon'\n", "lease.ttl", "duration"),
    ("[[slots]]\nid = 'p1'\nport = 1\ndatabase = 'App-DB'\n", "slots[0].database", "must match"),
    ("[[slots]]\nid = 'p1'\nport = 1\ndatabase = '" + "a" * 64 + "'\n", "slots[0].database",
     "63 bytes"),
    ("[[slots]]\nid = 'P1'\nport = 1\n", "slots[0].id", "must match"),
    ("[[slots]]\nid = 'p1'\nport = 70000\n", "slots[0].port", "1-65535"),
    ("[[slots]]\nid = 'p1'\nport = 1\n[[slots]]\nid = 'p2'\nport = 1\n", "slots[1].port",
     "used by slots[0]"),
    ("[database]\nurl = 'mysql://x'\n", "database.url", "postgresql://"),
    ("[runtime]\nmanager = 'docker'\n", "runtime.manager", "one of"),
    ("[env]\n'BAD-KEY' = 'x'\n", "env.BAD-KEY", "environment variable name"),
    ("[env]\nX = \"a\\nb\"\n", "env.X", "newline"),
    ("not toml = = =\n", None, "not valid TOML"),
])
def test_config_errors_name_file_key_and_problem(tmp_path: Path, text: str, key: str | None,
                                                  words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = err.value.message
    assert str(path) in message
    if key:
        assert key in message
    assert words in message
    assert err.value.exit_code == 2


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[seeds]\ndir = 'db/seeds'\n"))
    assert config.seeds_dir == tmp_path / "db" / "seeds"


@pytest.mark.parametrize("run_id", ["", "-rf", "a b", "x;rm", "a$b", "`x`", "a\nb", "é", "a" * 129])
def test_bad_run_ids_are_usage_errors(run_id: str) -> None:
    with pytest.raises(UsageError):
        validate_run_id(run_id)


@pytest.mark.parametrize("run_id", ["a", "gh:org/repo:123:1", "pr-42.attempt_2", "A" * 128])
def test_good_run_ids(run_id: str) -> None:
    assert validate_run_id(run_id) == run_id


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90), ("90s", 90), ("1m30s", 90), ("2h", 7200), ("500ms", 0.5), (5, 5), ("1d", 86400),
])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "1h-", "-5"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


def test_password_in_urls_is_registered_and_masked() -> None:
    from preview_slots.redact import mask

    config = build_config({"database": {"url": "postgresql://admin:s3cr3t-pw@db:5432/postgres"}},
                          None)
    assert config.database.url.password == "s3cr3t-pw"
    assert "s3cr3t-pw" not in mask("connecting with s3cr3t-pw to postgresql://admin:s3cr3t-pw@db/x")
    assert "s3cr3t-pw" not in config.control_plane.masked()


@pytest.mark.parametrize(("database", "words"), [
    ("postgres", "system database"), ("template1", "system database"),
    ("pslots_build_p1", "reserved prefix"), ("preview_slots", "control-plane"),
])
def test_disallowed_slot_databases_are_safety_refusals(tmp_path: Path, database: str,
                                                       words: str) -> None:
    from preview_slots.errors import NotAllowedDatabase

    path = write(tmp_path, f"[[slots]]\nid = 'p1'\nport = 1\ndatabase = '{database}'\n")
    with pytest.raises(NotAllowedDatabase) as err:
        load_config(path)
    assert err.value.exit_code == 4
    assert str(path) in err.value.message and words in err.value.message
