"""The main job on the embedded default, as `make demo` runs it: local stack up, init, allocate,
the reset row, health through Caddy, a second allocation from the warm spare, stack down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from preview_slots.config import load_config
from tests.conftest import ROOT


def run(state: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREVIEW_SLOTS_CONFIG": str(state / "preview-slots.toml")}
    env.pop("PREVIEW_SLOTS_FAILPOINT", None)
    return subprocess.run([sys.executable, "-m", "preview_slots", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    import shutil
    import tempfile

    # outside pytest's tree: the server runs as an unprivileged user when we are root
    state = Path(tempfile.mkdtemp(prefix="preview-slots-demo-")) / "state"
    up = run(state, "local", "up", "--state-dir", str(state))
    assert up.returncode == 0, up.stderr
    try:
        yield state
    finally:
        down = run(state, "local", "down", "--state-dir", str(state))
        shutil.rmtree(state.parent, ignore_errors=True)
        assert down.returncode == 0, down.stderr


def test_demo_flow(stack: Path) -> None:
    config = load_config(stack / "preview-slots.toml")
    assert config.runtime.manager == "supervisor" and config.caddy.tls == "off"
    assert run(stack, "init").returncode == 0

    first = run(stack, "allocate", "--run-id", "demo", "--strategy", "seed", "--seed-version",
                "v1", "--json", "--wait", "1m")
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["reset_status"] == "succeeded"
    slot = config.slot(data["slot_id"])

    history = json.loads(run(stack, "history", "--limit", "1", "--json").stdout)[0]
    assert history["id"] == data["reset_id"] and history["seed_version"] == "v1"

    # through Caddy, with the slot's Host header, no DNS
    request = urllib.request.Request(
        f"http://{config.caddy.proxy_address}:{config.caddy.http_port}/health",
        headers={"Host": slot.host})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.loads(response.read())
    assert body == {"status": "ok", "slot": slot.id, "database": slot.database} | {
        k: v for k, v in body.items() if k not in ("status", "slot", "database")}

    health = run(stack, "health", "--wait", "30s", "--json")
    assert health.returncode == 0, health.stdout + health.stderr

    # release, wait for the background spare, allocate again: the spare is swapped in
    assert run(stack, "release", "--run-id", "demo").returncode == 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # spares of v1 for the two free slots, in the background
        listed = json.loads(run(stack, "cache", "list", "--json").stdout)
        if sum(r["kind"] == "spare" and bool(r["comment"]) for r in listed) >= 2:
            break
        time.sleep(0.5)
    second = run(stack, "allocate", "--run-id", "demo2", "--strategy", "seed", "--seed-version",
                 "v1", "--json", "--wait", "1m")
    assert second.returncode == 0, second.stderr
    again = json.loads(run(stack, "history", "--limit", "1", "--json").stdout)[0]
    assert again["details"]["clone"] == "spare"
    assert again["details"]["phases"]["swap"] < 5
    status = run(stack, "local", "status", "--state-dir", str(stack))
    assert "postgresql: running" in status.stdout


def test_readiness_failure_is_recorded_and_the_slot_not_handed_out(stack: Path) -> None:
    from preview_slots.local.pg import free_port

    assert run(stack, "init").returncode == 0
    # the same stack, but the proxy address is wrong: the routed check can never pass
    text = (stack / "preview-slots.toml").read_text()
    config = load_config(stack / "preview-slots.toml")
    text = text.replace(f"http_port = {config.caddy.http_port}", f"http_port = {free_port()}")
    text = text.replace('[health]\n', '[health]\nready_timeout = "3s"\n')
    broken = stack / "broken.toml"
    broken.write_text(text)
    result = run(stack, "--config", str(broken), "allocate", "--run-id", "never", "--strategy",
                 "seed", "--seed-version", "v1", "--json")
    assert result.returncode == 1
    assert "routed" in result.stderr
    row = json.loads(run(stack, "history", "--run-id", "never", "--json").stdout)[0]
    assert row["reset_status"] == "failed"
    assert row["details"]["failed_phase"] == "readiness"
    assert row["details"]["health"]["checks"]["routed"]["status"] == "fail"
    status = json.loads(run(stack, "status", "--json").stdout)
    assert all(s["run_id"] != "never" for s in status)


def test_the_local_stack_listens_on_loopback_only(stack: Path) -> None:
    import socket

    config = load_config(stack / "preview-slots.toml")
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: finds this host's outward address
        outward = probe.getsockname()[0]
    finally:
        probe.close()
    if outward.startswith("127."):
        pytest.skip("this machine has no non-loopback address to test against")
    for port in (config.caddy.http_port, *(s.port for s in config.slots)):
        with socket.socket() as s, pytest.raises(OSError):
            s.settimeout(2)
            s.connect((outward, port))
