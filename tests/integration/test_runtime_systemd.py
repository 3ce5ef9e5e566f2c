"""Provisioning against a real systemd (booted in its own namespaces by ``systemd_sandbox``).

Slot services run ``env_probe.py``, which records its environment and argv, so the tests see
exactly what systemd handed the service. Cases C-07, C-08, C-11 and the dry-run guarantee.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from preview_slots.config import Config, load_config
from preview_slots.errors import RuntimeFailed
from preview_slots.local.pg import free_ports
from preview_slots.runtime import envfile
from preview_slots.runtime.plan import DaemonReload, RestartService
from preview_slots.runtime.provision import provision
from preview_slots.runtime.systemd import SystemdManager, render_unit
from tests.runtime_fixtures import (
    HANDWRITTEN_ENV,
    HANDWRITTEN_EXPECTED,
    SystemdSandbox,
    systemd_sandbox,
)

__all__ = ["systemd_sandbox"]

pytestmark = pytest.mark.systemd

PROBE = Path(__file__).resolve().parent / "env_probe.py"
PASSWORD = "s3cret-Pw-7731"
TOKEN = "tok-9f8e7d6c5b"
TRICKY = {
    "SPACE": "two words",
    "DOLLAR": "$HOME and ${PATH} and $$ and \\$",
    "HASH": "# not a comment #",
    "QUOTES": "it's \"quoted\" and `ticked`",
    "BACKSLASH": "C:\\path\\n\\",
    "EDGES": "  padded  ",
    "TAB": "a\tb",
    "UNICODE": "grüße ✓",
    "SEMI": ";x=1",
    "EMPTY": "",
    "API_TOKEN": TOKEN,
}


def _toml(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def write_config(folder: Path, sandbox: SystemdSandbox, *, app: str, slots: int = 2,
                 env: dict[str, str] | None = None, slot_env: str = "",
                 exec_args: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "out"
    out.mkdir(exist_ok=True)
    exec_start = shlex.join([sys.executable, str(PROBE), str(out)]) + exec_args
    text = (
        f'[database]\nurl = "postgresql://app:{PASSWORD}@127.0.0.1:5432/postgres"\n\n'
        f"[runtime]\nmanager = \"systemd\"\napp = \"{app}\"\nexec_start = {_toml(exec_start)}\n"
        f'env_dir = "{folder}/env"\nunit_dir = "{sandbox.units}"\n'
        f"systemctl = {json.dumps(sandbox.systemctl)}\n\n"
        '[caddy]\nenabled = false\ntls = "off"\nhttp_port = 8080\n\n[env]\n'
        + "".join(f"{k} = {_toml(v)}\n" for k, v in (env or {}).items())
    )
    ports_file = folder / "ports.json"  # the same ports every time this folder is rewritten
    if not ports_file.exists():
        ports_file.write_text(json.dumps(free_ports(slots)))
    ports = json.loads(ports_file.read_text())
    for n in range(1, slots + 1):
        text += (f'\n[[slots]]\nid = "s{n}"\nport = {ports[n - 1]}\n'
                 f'database = "{app}_db_{n}"\nstatic_root = "{folder}/static/s{n}"\n'
                 f'unit = "{app}-web@s{n}"\n')
        if n == 2 and slot_env:
            text += f"[slots.env]\n{slot_env}\n"
    path = folder / "preview-slots.toml"
    path.write_text(text)
    return path


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREVIEW_SLOTS_CONFIG": str(config)}
    return subprocess.run([sys.executable, "-m", "preview_slots", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def recorded(config: Config, slot_id: str) -> dict[str, object]:
    out = Path(shlex.split(config.runtime.exec_start)[2])
    data: dict[str, object] = json.loads((out / f"{slot_id}.json").read_text())
    return data


def tree_hash(*folders: Path) -> dict[str, str]:
    """Every file (and symlink target) under ``folders``, with mode and owner."""
    out: dict[str, str] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")) if folder.exists() else []:
            st = path.lstat()
            if path.is_symlink():
                digest = "-> " + os.readlink(path)
            elif path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                digest = "dir"
            out[str(path)] = f"{digest} {stat.S_IMODE(st.st_mode):o} {st.st_uid}:{st.st_gid}"
    return out


@pytest.fixture
def invocations(systemd_sandbox: SystemdSandbox) -> Callable[[Config], dict[str, str]]:
    def get(config: Config) -> dict[str, str]:
        return {s.id: systemd_sandbox.show(s.unit, "InvocationID") for s in config.slots}
    return get


def test_c07_service_gets_exactly_the_intended_environment(
    systemd_sandbox: SystemdSandbox, tmp_path: Path,
) -> None:
    path = write_config(tmp_path, systemd_sandbox, app="c07", env=TRICKY,
                        slot_env='PER_SLOT = "only s2 $USER"',
                        exec_args=" 'a b' '100%' '$HOME' 'semi;colon' \"quo'te\" 'back\\sl'")
    config = load_config(path)

    dry = cli(path, "--debug", "provision", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    for secret in (PASSWORD, TOKEN):
        assert secret not in dry.stdout + dry.stderr
    assert "DATABASE_URL=postgresql://app:***@127.0.0.1:5432/c07_db_1" in dry.stdout

    result = cli(path, "--debug", "provision")
    assert result.returncode == 0, result.stderr
    for secret in (PASSWORD, TOKEN):
        assert secret not in result.stdout + result.stderr

    for slot in config.slots:
        record = recorded(config, slot.id)
        env = record["env"]
        assert isinstance(env, dict)
        for key, value in TRICKY.items():
            assert env[key] == value, key
        assert env["DATABASE_URL"] == f"postgresql://app:{PASSWORD}@127.0.0.1:5432/{slot.database}"
        assert env["PREVIEW_SLOT"] == slot.id
        assert env["PORT"] == str(slot.port)
        assert env["HOST"] == "127.0.0.1"
        assert env["STATIC_ROOT"] == str(slot.static_root)
        assert env["PUBLIC_URL"] == f"http://{slot.host}:8080"
        assert ("PER_SLOT" in env) == (slot.id == "s2")
        assert record["argv"] == [str(tmp_path / "out"), "a b", "100%", "$HOME", "semi;colon",
                                  "quo'te", "back\\sl"]
        env_file = tmp_path / "env" / f"{slot.id}.env"
        st = env_file.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
        assert slot.static_root.is_dir()
    assert recorded(config, "s2")["env"]["PER_SLOT"] == "only s2 $USER"  # type: ignore[index]

    # the tool sees the same environment (its MainPID mapped across the PID namespace)
    seen = SystemdManager(config.runtime).environment(config.slots[0])
    assert seen is not None and seen["DOLLAR"] == TRICKY["DOLLAR"]


def test_c07_our_parser_reads_env_files_as_systemd_does(
    systemd_sandbox: SystemdSandbox, tmp_path: Path,
) -> None:
    path = write_config(tmp_path, systemd_sandbox, app="parse", slots=1)
    config = load_config(path)
    provision(config)
    slot = config.slots[0]
    env_file = tmp_path / "env" / "s1.env"
    text = f"PREVIEW_SLOT=s1\nPORT={slot.port}\n" + HANDWRITTEN_ENV
    env_file.write_text(text)
    record = tmp_path / "out" / "s1.json"
    record.unlink()
    assert systemd_sandbox.ctl("restart", "parse-web@s1.service").returncode == 0
    deadline = time.monotonic() + 30
    while not record.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = recorded(config, "s1")["env"]
    assert isinstance(seen, dict)
    assert {k: seen[k] for k in HANDWRITTEN_EXPECTED} == HANDWRITTEN_EXPECTED
    assert envfile.parse(text) == {"PREVIEW_SLOT": "s1", "PORT": str(slot.port),
                                   **HANDWRITTEN_EXPECTED}


def test_c07_newline_and_control_characters_are_refused(
    systemd_sandbox: SystemdSandbox, tmp_path: Path,
) -> None:
    path = write_config(tmp_path / "nl", systemd_sandbox, app="c07nl",
                        env={"BAD": "line one\nline two"})
    result = cli(path, "provision")
    assert result.returncode == 2
    assert "env.BAD" in result.stderr and "newline" in result.stderr
    path = write_config(tmp_path / "esc", systemd_sandbox, app="c07esc",
                        env={"BAD": "bell\x1b[0m"})
    result = cli(path, "provision")
    assert result.returncode == 2
    assert "env.BAD" in result.stderr and "control character" in result.stderr
    assert not (tmp_path / "nl" / "env").exists() and not (tmp_path / "esc" / "env").exists()
    assert not list(systemd_sandbox.units.glob("c07nl*")) + list(systemd_sandbox.units.glob("c07esc*"))


def test_c08_restart_exactly_what_changed(
    systemd_sandbox: SystemdSandbox, tmp_path: Path,
    invocations: Callable[[Config], dict[str, str]],
) -> None:
    path = write_config(tmp_path, systemd_sandbox, app="c08", slots=3)
    config = load_config(path)
    first = provision(config)
    assert first.applied
    before = invocations(config)
    assert all(before.values())
    assert systemd_sandbox.show("c08-web@s1", "UnitFileState") == "enabled"

    # the unit (a new flag in the start command) and one slot's env file change
    path = write_config(tmp_path, systemd_sandbox, app="c08", slots=3, exec_args=" --new-flag",
                        slot_env='FEATURE = "on"')
    config = load_config(path)
    result = provision(config)
    kinds = [type(a) for a in result.plan.actions]
    reload_at = kinds.index(DaemonReload)
    restarts = [i for i, k in enumerate(kinds) if k is RestartService]
    assert restarts and reload_at < min(restarts)
    assert sorted(result.plan.restarts()) == ["s1", "s2", "s3"]
    after = invocations(config)
    assert all(after[s] != before[s] for s in after)
    assert recorded(config, "s1")["argv"] == [str(tmp_path / "out"), "--new-flag"]
    assert recorded(config, "s2")["env"]["FEATURE"] == "on"  # type: ignore[index]

    # only one env file changes: only that instance restarts, no daemon-reload
    path = write_config(tmp_path, systemd_sandbox, app="c08", slots=3, exec_args=" --new-flag",
                        slot_env='FEATURE = "off"')
    config = load_config(path)
    result = provision(config)
    assert DaemonReload not in [type(a) for a in result.plan.actions]
    assert result.plan.restarts() == ("s2",)
    again = invocations(config)
    assert again["s1"] == after["s1"] and again["s3"] == after["s3"]
    assert again["s2"] != after["s2"]

    # nothing changed: no changes, nothing restarted
    result = provision(config)
    assert result.plan.empty and not result.applied
    assert "no changes" in result.lines()
    assert invocations(config) == again
    assert cli(path, "provision").stdout.strip().endswith("no changes")


def test_c11_missing_env_file_fails_the_start_never_falls_back(
    systemd_sandbox: SystemdSandbox, tmp_path: Path,
) -> None:
    path = write_config(tmp_path, systemd_sandbox, app="c11")
    config = load_config(path)
    unit_text = render_unit(config)
    lines = [line for line in unit_text.splitlines() if line.startswith("EnvironmentFile=")]
    assert lines == [f"EnvironmentFile={tmp_path}/env/%i.env"]

    # a fallback DATABASE_URL in the manager's own environment never reaches the service
    systemd_sandbox.ctl("set-environment", "DATABASE_URL=postgresql://shared/someone_else")
    try:
        provision(config)
        slot = config.slots[0]
        manager = SystemdManager(config.runtime)
        env = manager.environment(slot)
        assert env is not None and env["DATABASE_URL"].endswith(f"/{slot.database}")

        (tmp_path / "env" / "s1.env").unlink()
        record = tmp_path / "out" / "s1.json"
        record.unlink()
        # the tool refuses before stopping what runs...
        with pytest.raises(RuntimeFailed, match=r"env file .*/s1\.env is missing"):
            manager.restart(slot)
        assert manager.state(slot).active
        # ...and systemd itself refuses to start the unit without it
        assert systemd_sandbox.ctl("restart", "c11-web@s1.service").returncode != 0
        assert not manager.state(slot).active
        assert systemd_sandbox.show("c11-web@s1.service", "Result") == "resources"
        assert not record.exists()  # the application never ran

        # provision puts the env file back and starts the service again
        again = provision(config)
        assert [a.describe()[0].split(" (")[0] for a in again.plan.actions[:1]] == [
            f"write {tmp_path}/env/s1.env"]
        assert manager.state(slot).active and record.exists()
    finally:
        systemd_sandbox.ctl("unset-environment", "DATABASE_URL")


def test_dry_run_changes_no_file_and_no_service(
    systemd_sandbox: SystemdSandbox, tmp_path: Path,
    invocations: Callable[[Config], dict[str, str]],
) -> None:
    path = write_config(tmp_path, systemd_sandbox, app="dry")
    provision(load_config(path))
    path = write_config(tmp_path, systemd_sandbox, app="dry", exec_args=" --changed",
                        slot_env=f'SECRET_KEY = "{TOKEN}"')
    config = load_config(path)
    managed = (tmp_path / "env", systemd_sandbox.units, tmp_path / "static")
    files_before, states_before = tree_hash(*managed), invocations(config)
    result = cli(path, "provision", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert tree_hash(*managed) == files_before
    assert invocations(config) == states_before
    assert "systemctl daemon-reload" in result.stdout and "restart dry-web@s2" in result.stdout
    assert "+SECRET_KEY=***" in result.stdout and TOKEN not in result.stdout
    assert "dry run: nothing was changed" in result.stdout


def test_a_port_held_by_another_program_is_reported(
    systemd_sandbox: SystemdSandbox, tmp_path: Path,
) -> None:
    path = write_config(tmp_path, systemd_sandbox, app="busy", slots=1)
    config = load_config(path)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", config.slots[0].port))
        squatter.listen()
        with pytest.raises(RuntimeFailed) as failed:
            provision(config)
    message = failed.value.message
    assert (f"is held by another program (pid {os.getpid()}" in message
            or "stopped right after its start" in message), message
