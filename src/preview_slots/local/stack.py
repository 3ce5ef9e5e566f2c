"""The embedded local stack: PostgreSQL (and, when available, supervisord + Caddy) in a folder.

``preview-slots local up`` starts it and writes ``<state>/preview-slots.toml``, a complete config
pointing at it; ``local down`` stops it; ``local status`` reports. Nothing outside the state
folder is touched (when run as root, the server runs as an unprivileged system user).
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from preview_slots.local.pg import LocalPostgres, free_port, free_ports, pg_bin_dir

if TYPE_CHECKING:
    from preview_slots.config import Config

CONFIG_NAME = "preview-slots.toml"


@dataclass(frozen=True)
class LocalStack:
    state_dir: Path

    @property
    def config_path(self) -> Path:
        return self.state_dir / CONFIG_NAME

    @property
    def _meta_path(self) -> Path:
        return self.state_dir / "local.json"

    def postgres(self) -> LocalPostgres:
        meta = self._meta()
        return LocalPostgres(self.state_dir.resolve() / "postgres", int(meta["pg_port"]),
                             Path(meta["pg_bin"]))

    def _meta(self) -> dict[str, str]:
        if self._meta_path.exists():
            data: dict[str, str] = json.loads(self._meta_path.read_text())
            ports = [data.get("pg_port", ""), *data.get("slot_ports", "").split(",")]
            if len(set(ports)) == len(ports):
                return data
            # a stack made before ports were picked together may have given a slot the
            # server's port: keep the server's, pick the slots' again
            data["slot_ports"] = ",".join(str(p) for p in _slot_ports(int(data["pg_port"])))
            self._meta_path.write_text(json.dumps(data, indent=2) + "\n")
            return data
        pg_port = free_port()
        meta = {"pg_port": str(pg_port), "pg_bin": str(pg_bin_dir()),
                "slot_ports": ",".join(str(p) for p in _slot_ports(pg_port))}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._meta_path.write_text(json.dumps(meta, indent=2) + "\n")
        return meta

    def up(self, seeds_dir: Path) -> list[str]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pg = self.postgres()
        pg.init()
        pg.start()
        lines = [f"postgresql {pg_version(pg)} on 127.0.0.1:{pg.port} (data {pg.datadir})"]
        self._write_config(pg, seeds_dir)
        lines.append(f"config written to {self.config_path} (for other commands: export "
                     f"PREVIEW_SLOTS_CONFIG={self.config_path.resolve()})")
        ports = self._meta().get("slot_ports", "3101,3102,3103")
        if ports != "3101,3102,3103":
            lines.append(f"slot ports {ports} (3101-3103 were in use when this stack was made)")
        from preview_slots.config import load_config

        config = load_config(self.config_path)
        created = _ensure_slot_databases(config)
        if created:
            lines.append(f"created empty slot databases: {', '.join(created)}")
        services = _services()
        if services is not None:
            services.start_services(self.state_dir.resolve(), config)
            lines += services.services_status(self.state_dir.resolve())
        return lines

    def down(self) -> list[str]:
        lines = []
        services = _services()
        if services is not None:
            services.stop_services(self.state_dir.resolve())
            lines.append("services stopped")
        if self._meta_path.exists():
            self.postgres().stop()
            lines.append("postgresql stopped")
        return lines or ["nothing is running"]

    def status(self) -> list[str]:
        if not self._meta_path.exists():
            return [f"no local stack in {self.state_dir} (run `preview-slots local up`)"]
        pg = self.postgres()
        lines = [f"postgresql: {'running' if pg.running() else 'stopped'} on 127.0.0.1:{pg.port}"]
        services = _services()
        if services is not None:
            lines += services.services_status(self.state_dir.resolve())
        return lines

    def _write_config(self, pg: LocalPostgres, seeds_dir: Path) -> None:
        state = self.state_dir.resolve()
        slots = []
        ports = [int(p) for p in self._meta().get("slot_ports", "3101,3102,3103").split(",")]
        for n, port in zip((1, 2, 3), ports, strict=True):
            slots.append(
                "[[slots]]\n"
                f'id = "preview{n}"\nhost = "preview{n}.example.com"\nport = {port}\n'
                f'static_root = "{state}/static/preview{n}"\ndatabase = "app_preview_{n}"\n'
                f'unit = "ouroboros-web@preview{n}"\n'
            )
        text = (
            "# Written by `preview-slots local up`: the embedded local stack. Do not edit; it is\n"
            "# rewritten on every `local up`. Copy it elsewhere to customise.\n\n"
            f'[database]\nurl = "{pg.url("postgres")}"\nbin_dir = "{pg.bin_dir}"\n\n'
            f'[control_plane]\nurl = "{pg.url("preview_slots")}"\n\n'
            f'[seeds]\ndir = "{seeds_dir.resolve()}"\n\n'
            f'[snapshots]\ndir = "{state}/snapshots"\n\n'
            "[lease]\nttl = \"2h\"\nreset_ttl = \"1m\"\npoll_interval = \"2s\"\n\n"
            + "\n".join(slots)
        )
        services = _services()
        avoid = {pg.port, *ports}
        text += "\n" + (services.local_config_toml(state, avoid=avoid) if services is not None
                        else '[runtime]\nmanager = "none"\n')
        tmp = self.config_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.config_path)


def _ensure_slot_databases(config: Config) -> list[str]:
    """Give every slot a database (empty) so its example app can start before its first reset."""
    from preview_slots.pgadmin import SlotServer

    created = []
    with SlotServer(config, application_name="preview-slots local up") as server:
        for slot in config.slots:
            if not server.exists(slot.database):
                server.create(slot.database)
                created.append(slot.database)
    return created


def _slot_ports(pg_port: int) -> list[int]:
    """The seed's ports 3101-3103 when they are free here, else three other free ones (say,
    when another stack or program already uses them), never the server's ``pg_port``; chosen
    once and kept in the state folder."""
    seed = [3101, 3102, 3103]
    if pg_port not in seed and all(_port_free(p) for p in seed):
        return seed
    return free_ports(3, avoid={pg_port})


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pg_version(pg: LocalPostgres) -> str:
    version_file = pg.datadir / "PG_VERSION"
    return version_file.read_text().strip() if version_file.exists() else "?"


def _services() -> ModuleType | None:
    """The supervisord + Caddy part of the stack, when installed with this package."""
    try:
        return importlib.import_module("preview_slots.local.services")
    except ModuleNotFoundError:
        return None
