"""What /proc says about a service's process: its environment, found across PID namespaces."""

from __future__ import annotations

import os
from pathlib import Path


def host_pid_of(pid: int, unit: str) -> int | None:
    """``pid`` as seen from here. It is systemd's MainPID, which differs from ours when systemd
    runs in another PID namespace; the unit's cgroup confirms we found the right process."""

    def in_unit(candidate: int) -> bool:
        try:
            cgroups = Path(f"/proc/{candidate}/cgroup").read_text()
        except OSError:
            return False
        return any(line.endswith("/" + unit) for line in cgroups.splitlines())

    if in_unit(pid):
        return pid
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        nspid = next((line.split()[1:] for line in status.splitlines()
                      if line.startswith("NSpid:")), [])
        if len(nspid) > 1 and nspid[-1] == str(pid) and in_unit(int(entry)):
            return int(entry)
    return None


def read_environ(pid: int) -> dict[str, str] | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        if b"=" in item:
            key, _, value = item.partition(b"=")
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env
