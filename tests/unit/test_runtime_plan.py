"""Planning and applying file changes (no service manager: ``manager = "none"``)."""

from __future__ import annotations

import grp
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from preview_slots.config import Config, build_config
from preview_slots.runtime import files
from preview_slots.runtime.plan import InstallCaddyfile, MakeDirectory, WriteFile
from preview_slots.runtime.provision import build_plan, provision

PASSWORD = "Very-Secret-pw-42"


def make_config(tmp: Path, *, group: str | None = None, caddy: bool = False,
                extra_env: dict[str, str] | None = None) -> Config:
    runtime: dict[str, Any] = {"manager": "none", "env_dir": str(tmp / "env")}
    if group:
        runtime["group"] = group
    return build_config({
        "database": {"url": f"postgresql://app:{PASSWORD}@127.0.0.1:5432/postgres"},
        "runtime": runtime,
        "caddy": {"enabled": caddy, "caddyfile": str(tmp / "caddy" / "Caddyfile"), "tls": "off"},
        "env": {"API_TOKEN": "tok-abcdef-99", **(extra_env or {})},
        "slots": [{"id": f"p{n}", "port": 3100 + n, "static_root": str(tmp / "static" / f"p{n}")}
                  for n in (1, 2)],
    }, None)


@pytest.fixture(params=[0o000, 0o077], ids=["umask000", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_c07_first_plan_writes_env_files_0600_whatever_the_umask(
    tmp_path: Path, umask: int,
) -> None:
    config = make_config(tmp_path)
    plan = build_plan(config)
    kinds = [type(a) for a in plan.actions]
    assert kinds == [MakeDirectory, MakeDirectory, WriteFile, WriteFile]
    result = provision(config)
    assert result.applied
    for slot in config.slots:
        path = tmp_path / "env" / f"{slot.id}.env"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.stat().st_uid == os.geteuid()
        assert stat.S_IMODE(slot.static_root.stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "env").stat().st_mode) == 0o755
    assert not list((tmp_path / "env").glob(".*"))  # no temporary file left

    again = provision(config)
    assert again.plan.empty and not again.applied
    assert again.lines() == ["plan for p1, p2 (manager: none)", "no changes"]


def test_c07_env_files_are_0640_with_the_service_group(tmp_path: Path) -> None:
    group = grp.getgrgid(os.getegid()).gr_name
    config = make_config(tmp_path, group=group)
    provision(config)
    st = (tmp_path / "env" / "p1.env").stat()
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_gid == os.getegid()


def test_wrong_mode_is_fixed_without_counting_as_a_content_change(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    provision(config)
    (tmp_path / "env" / "p2.env").chmod(0o644)
    plan = build_plan(config)
    assert len(plan.actions) == 1
    action = plan.actions[0]
    assert isinstance(action, WriteFile) and not action.content_changed
    assert "fix mode/owner" in plan.render()[1]
    provision(config)
    assert stat.S_IMODE((tmp_path / "env" / "p2.env").stat().st_mode) == 0o600


def test_c07_plan_shows_diffs_with_secrets_masked(tmp_path: Path) -> None:
    provision(make_config(tmp_path))
    config = make_config(tmp_path, extra_env={"FEATURE": "on", "DB_PASSWORD": "hunter2-x"},
                         caddy=True)
    plan = build_plan(config, ["p1"])
    text = "\n".join(plan.render())
    assert PASSWORD not in text and "tok-abcdef-99" not in text and "hunter2-x" not in text
    assert "+FEATURE=on" in text and "+DB_PASSWORD=***" in text
    assert f"--- {tmp_path}/env/p1.env" in text
    assert "p2.env" not in text  # --slot p1
    caddy = [a for a in plan.actions if isinstance(a, InstallCaddyfile)]
    assert caddy and caddy[0].old is None and "+\treverse_proxy 127.0.0.1:3102" in text


def test_dry_run_cli_changes_nothing(tmp_path: Path) -> None:
    config_file = tmp_path / "preview-slots.toml"
    config_file.write_text(
        f'[database]\nurl = "postgresql://app:{PASSWORD}@127.0.0.1:5432/postgres"\n'
        f'[runtime]\nmanager = "none"\nenv_dir = "{tmp_path}/env"\n[caddy]\nenabled = false\n'
        f'[[slots]]\nid = "p1"\nport = 3101\nstatic_root = "{tmp_path}/static"\n')
    env = {**os.environ, "PREVIEW_SLOTS_CONFIG": str(config_file)}
    result = subprocess.run([sys.executable, "-m", "preview_slots", "provision", "--dry-run"],
                            env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "dry run: nothing was changed" in result.stdout
    assert "DATABASE_URL=postgresql://app:***@127.0.0.1:5432/app_p1" in result.stdout
    assert PASSWORD not in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preview-slots.toml"]


def test_install_file_replaces_atomically_and_keeps_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "file"
    files.install_file(target, "one\n", mode=0o600)
    files.install_file(target, "two\n", mode=0o640)
    assert target.read_text() == "two\n" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["file"]
    existing = files.read_existing(target)
    assert existing is not None and existing.content == "two\n" and existing.mode == 0o640
    assert files.read_existing(tmp_path / "missing") is None


def test_removed_or_changed_secrets_are_masked_in_diffs() -> None:
    from pathlib import Path

    from preview_slots.runtime.files import masked_diff

    old = "PORT=1\nAPI_TOKEN=sekrit-tok-123\nDB_PASSWORD=\"old pw\"\nPLAIN=visible\n"
    new = "PORT=1\nDB_PASSWORD=\"new pw\"\nPLAIN=visible2\n"
    text = "\n".join(masked_diff(old, new, Path("/etc/x/preview1.env")))
    assert "sekrit-tok-123" not in text and "old pw" not in text and "new pw" not in text
    assert "-API_TOKEN=***" in text
    assert "-PLAIN=visible" in text and "+PLAIN=visible2" in text  # not secrets: shown
