"""A PostgreSQL server in a folder, for the embedded default and the test suite.

Uses the server binaries shipped in the ``pgserver`` wheel when it is installed, else the ones on
PATH (``pg_config --bindir``). It listens on 127.0.0.1 only, with password authentication, so the
same code paths (and the same secret masking) run as against a real host's server. PostgreSQL
refuses to run as root: when we are root, the server runs as an unprivileged system user.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import stat
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from preview_slots.errors import OperationFailed
from preview_slots.runner import run

SERVICE_USER = "preview-slots"
SUPERUSER = "postgres"

LOCAL_SETTINGS = """
# written by preview-slots for a local, disposable server
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
log_connections = off
"""


def pg_bin_dir(explicit: Path | None = None) -> Path:
    """Where psql, pg_dump, pg_restore (and the server) live."""
    if explicit is not None:
        return explicit
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "pginstall" / "bin"
        if (candidate / "psql").exists():
            return candidate
    pg_config = shutil.which("pg_config")
    if pg_config:
        return Path(run([pg_config, "--bindir"]).stdout.strip())
    psql = shutil.which("psql")
    if psql:
        return Path(psql).parent
    raise OperationFailed(
        "no PostgreSQL client programs found: install the 'pgserver' wheel "
        "(pip install 'preview-slots[local]') or postgresql-client, or set [database] bin_dir"
    )


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int, *, avoid: Collection[int] = ()) -> list[int]:
    """``count`` distinct free loopback ports, none of them in ``avoid``. The sockets stay bound
    until all are picked, so that two picks cannot return the same port."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if port not in avoid:
                ports.append(port)
        return ports


def _service_user() -> pwd.struct_passwd | None:
    """The user the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", SERVICE_USER], what="useradd")
        return pwd.getpwnam(SERVICE_USER)


def _make_traversable(path: Path) -> None:
    """Let the service user reach ``path``: add o+x (search, not read) on each parent folder."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


@dataclass(frozen=True)
class LocalPostgres:
    """One local server: its data folder, port and superuser password."""

    root: Path  # holds data/, server.log, password
    port: int
    bin_dir: Path

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    @property
    def password(self) -> str:
        return (self.root / "password").read_text().strip()

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def _as_service(self, argv: list[str], timeout: float = 60) -> None:
        user = _service_user()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
               "HOME": "/nonexistent" if user else os.environ.get("HOME", "/")}
        if user is None:
            run(argv, timeout=timeout, env=env)
            return
        import subprocess

        proc = subprocess.run(
            argv, user=user.pw_uid, group=user.pw_gid, extra_groups=[], env=env,
            capture_output=True, text=True, timeout=timeout, check=False, cwd="/",
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()
            raise OperationFailed(
                f"{Path(argv[0]).name} failed: {tail[-1] if tail else proc.returncode}"
                f" (see {self.logfile})"
            )

    def initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        user = _service_user()
        pwfile = self.root / "password"
        if not pwfile.exists():
            fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(18) + "\n")
        if self.initialised():
            return
        self.datadir.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            _make_traversable(self.root)
            _make_traversable(self.bin_dir)
            os.chown(self.datadir, user.pw_uid, user.pw_gid)
            os.chown(pwfile, user.pw_uid, user.pw_gid)
            self.logfile.touch()
            os.chown(self.logfile, user.pw_uid, user.pw_gid)
        self._as_service([
            str(self.bin_dir / "initdb"), "-D", str(self.datadir), "-U", SUPERUSER,
            "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8",
            "--locale=C.UTF-8", "--no-sync",
        ], timeout=120)
        with (self.datadir / "postgresql.conf").open("a") as fh:
            fh.write(LOCAL_SETTINGS + f"port = {self.port}\n")

    def running(self) -> bool:
        pidfile = self.datadir / "postmaster.pid"
        if not pidfile.exists():
            return False
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return False
        return True

    def start(self) -> None:
        if self.running():
            return
        self._as_service([
            str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
            "-w", "-t", "60", "-o", f"-p {self.port}", "start",
        ], timeout=90)

    def stop(self, mode: str = "fast") -> None:
        if not self.running():
            return
        self._as_service([
            str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop",
        ], timeout=90)

    def restart(self, mode: str = "fast") -> None:
        self._as_service([
            str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
            "-m", mode, "-w", "-o", f"-p {self.port}", "restart",
        ], timeout=90)
