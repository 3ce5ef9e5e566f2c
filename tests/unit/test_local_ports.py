"""The embedded stack's ports: distinct from each other and from the server's, even when an
older state folder recorded a collision (a slot given the server's port)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from preview_slots.local import services
from preview_slots.local.pg import free_ports
from preview_slots.local.stack import LocalStack


def test_free_ports_are_distinct_and_avoid_what_is_asked() -> None:
    with socket.socket() as held:  # a port the kernel could hand out again once closed
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
    ports = free_ports(40, avoid={taken})
    assert len(set(ports)) == 40 and taken not in ports


def test_a_recorded_collision_is_repaired_keeping_the_servers_port(tmp_path: Path) -> None:
    meta = {"pg_port": "33319", "pg_bin": "/nonexistent", "slot_ports": "52441,33319,38477"}
    (tmp_path / "local.json").write_text(json.dumps(meta))
    repaired = LocalStack(tmp_path)._meta()
    slot_ports = [int(p) for p in repaired["slot_ports"].split(",")]
    assert repaired["pg_port"] == "33319"
    assert len(set(slot_ports)) == 3 and 33319 not in slot_ports
    assert json.loads((tmp_path / "local.json").read_text()) == repaired  # kept for next time
    # a healthy record is kept as it is
    assert LocalStack(tmp_path)._meta() == repaired


def test_caddy_ports_avoid_the_slots_and_server(tmp_path: Path) -> None:
    layout = services.Layout(tmp_path)
    layout.ports_file.parent.mkdir(parents=True, exist_ok=True)
    layout.ports_file.write_text(json.dumps({"http_port": 4000, "https_port": 4001,
                                             "admin_port": 4002}))
    assert services._ports(layout, avoid={5000}) == {"http_port": 4000, "https_port": 4001,
                                                     "admin_port": 4002}
    repicked = services._ports(layout, avoid={4001, 5000})
    assert len(set(repicked.values())) == 3 and not set(repicked.values()) & {4001, 5000}
    assert services._ports(layout, avoid={4001, 5000}) == repicked  # recorded


def test_free_ports_skips_what_it_must_avoid(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel seldom hands out a given port again, so the rule is shown on sockets whose
    ports are chosen here (pure logic: the real sockets are tested above)."""
    offered = iter([5001, 5002, 5001, 5003])

    class Socket:
        def __init__(self) -> None:
            self.port = 0

        def __enter__(self) -> Socket:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def bind(self, address: tuple[str, int]) -> None:
            self.port = next(offered)

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr("preview_slots.local.pg.socket.socket", Socket)
    assert free_ports(2, avoid={5001}) == [5002, 5003]
