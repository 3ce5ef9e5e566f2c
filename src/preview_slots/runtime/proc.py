"""What /proc says about a service's process: its environment, found across PID namespaces."""

from __future__ import annotations

import os
import socket
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


def listening_inodes(port: int) -> set[int]:
    """Socket inodes listening on TCP ``port`` (IPv4 and IPv6, any address)."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(fields[9]))
    return inodes


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                todo += [int(c) for c in
                         Path(f"/proc/{current}/task/{task}/children").read_text().split()]
            except OSError:
                continue
    return out


def socket_inodes(pid: int) -> set[int] | None:
    """Inodes of the sockets ``pid`` holds; None when we may not look."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except PermissionError:
        return None
    except OSError:
        return set()
    inodes: set[int] = set()
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def port_holders(port: int) -> list[int]:
    """PIDs holding a socket listening on ``port`` (those we may look at)."""
    wanted = listening_inodes(port)
    if not wanted:
        return []
    holders = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            held = socket_inodes(int(entry))
            if held and held & wanted:
                holders.append(int(entry))
    return holders


def listener_outside(port: int, pid: int) -> int | None:
    """A process outside ``pid``'s tree that listens on ``port`` while nothing in the tree does;
    None when the tree holds the listener or when we cannot tell."""
    wanted = listening_inodes(port)
    if not wanted:
        return None
    for member in process_tree(pid):
        held = socket_inodes(member)
        if held is None:
            return None  # not allowed to look: cannot tell
        if held & wanted:
            return None
    others = port_holders(port)
    return others[0] if others else None


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)[:120]


def listening(port: int) -> bool:
    """Something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
