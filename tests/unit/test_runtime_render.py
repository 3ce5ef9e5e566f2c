"""Rendering: the systemd template unit, supervisord programs and the Caddyfile."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from preview_slots.config import Config, build_config
from preview_slots.errors import ConfigError
from preview_slots.runtime.caddy import render_caddyfile
from preview_slots.runtime.command import exec_argv
from preview_slots.runtime.supervisor import render_program
from preview_slots.runtime.systemd import quote_word, render_unit, template_name


def config(runtime: dict[str, Any] | None = None, caddy: dict[str, Any] | None = None,
           slots: list[dict[str, Any]] | None = None) -> Config:
    data: dict[str, Any] = {"runtime": runtime or {}, "caddy": caddy or {}}
    if slots is not None:
        data["slots"] = slots
    return build_config(data, None)


def test_unit_has_a_mandatory_env_file_and_the_configured_service() -> None:
    cfg = config({"exec_start": "/opt/app/bin/web --port-from-env", "user": "www-data",
                  "group": "www-data", "working_directory": "/opt/app", "restart": "always",
                  "env_dir": "/etc/ouroboros/preview"})
    unit = render_unit(cfg)
    assert template_name(cfg) == "ouroboros-web@.service"
    assert "EnvironmentFile=/etc/ouroboros/preview/%i.env" in unit.splitlines()
    assert "EnvironmentFile=-" not in unit  # C-11: a missing file must fail the start
    assert "ExecStart=/opt/app/bin/web --port-from-env" in unit
    for line in ("User=www-data", "Group=www-data", "WorkingDirectory=/opt/app",
                 "Restart=always", "WantedBy=multi-user.target"):
        assert line in unit.splitlines()


def test_unit_escapes_specifiers_and_variables_in_words_and_paths() -> None:
    cfg = config({"exec_start": "/usr/bin/app '100%' '$HOME' 'two words' 'say \"hi\"' 'back\\\\s'",
                  "env_dir": "/etc/odd%dir"})
    unit = render_unit(cfg)
    assert 'ExecStart=/usr/bin/app "100%%" "$$HOME" "two words" "say \\"hi\\"" "back\\\\\\\\s"' \
        in unit
    assert "EnvironmentFile=/etc/odd%%dir/%i.env" in unit


@pytest.mark.parametrize(("word", "rendered"), [
    ("plain", "plain"), ("/a/b.c", "/a/b.c"), ("--k=v", "--k=v"), ("a;b", '"a;b"'),
    ("50%", '"50%%"'), ("$X", '"$$X"'), ("t\tab", '"t\\tab"'),
])
def test_quote_word(word: str, rendered: str) -> None:
    assert quote_word(word) == rendered


@pytest.mark.parametrize(("exec_start", "message"), [
    ("/bin/app 'unbalanced", "cannot split"), ("", "is empty"), ("-/bin/app", "prefixes"),
])
def test_bad_exec_start_is_a_config_error(exec_start: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        exec_argv(config({"exec_start": exec_start}))


def test_supervisor_program_runs_envexec_with_the_exact_argv(tmp_path: Path) -> None:
    cfg = config({"manager": "supervisor", "exec_start": "/usr/bin/app '100%' 'two words'",
                  "env_dir": str(tmp_path / "env"), "user": "app", "restart": "on-failure"},
                 slots=[{"id": "p1", "port": 3101, "unit": "shop-web@p1"}])
    text = render_program(cfg, cfg.slots[0], python="/venv/bin/python")
    assert "[program:shop-web@p1]" in text
    command = next(line for line in text.splitlines() if line.startswith("command="))
    # supervisord expands %(...)s, then splits like a shell
    argv = shlex.split(command.removeprefix("command=").replace("%%", "%"))
    assert argv == ["/venv/bin/python", "-m", "preview_slots.runtime.envexec",
                    str(tmp_path / "env" / "p1.env"), "--", "/usr/bin/app", "100%", "two words"]
    for line in ("user=app", "autostart=true", "autorestart=unexpected"):
        assert line in text.splitlines()


def test_supervisor_refuses_a_program_name_with_a_colon() -> None:
    cfg = config({"manager": "supervisor"}, slots=[{"id": "p1", "port": 1, "unit": "a:b"}])
    with pytest.raises(ConfigError, match="supervisord program name"):
        render_program(cfg, cfg.slots[0], python="python")


def test_caddyfile_one_site_per_slot_with_ports_tls_and_admin() -> None:
    text = render_caddyfile(config(caddy={"tls": "off", "http_port": 8080, "https_port": 8443,
                                          "admin": "127.0.0.1:2999"}))
    assert "\tadmin 127.0.0.1:2999" in text and "\tauto_https off" in text
    assert "\thttp_port 8080" in text and "\thttps_port 8443" in text
    for n in (1, 2, 3):
        assert f"http://preview{n}.example.com {{\n\treverse_proxy 127.0.0.1:310{n}\n}}" in text

    internal = render_caddyfile(config(caddy={"tls": "internal",
                                              "site_directives": ["encode gzip"]}))
    assert ("preview1.example.com {\n\ttls internal\n\tencode gzip\n"
            "\treverse_proxy 127.0.0.1:3101\n}") in internal
    assert "auto_https" not in internal
    auto = render_caddyfile(config(caddy={"tls": "auto"}))
    assert "\npreview2.example.com {\n\treverse_proxy 127.0.0.1:3102\n}" in auto


def test_c09_caddy_admin_off_cannot_be_provisioned() -> None:
    with pytest.raises(ConfigError, match=r"caddy\.admin"):
        render_caddyfile(config(caddy={"admin": "off"}))


def test_site_directives_must_be_one_line_strings() -> None:
    with pytest.raises(ConfigError, match="site_directives"):
        config(caddy={"site_directives": ["a\nb"]})
    with pytest.raises(ConfigError, match="site_directives"):
        config(caddy={"site_directives": [1]})
