"""Real service managers for the runtime tests: a systemd booted in its own PID + mount namespace.

``systemd_sandbox`` boots ``/lib/systemd/systemd`` as PID 1 of a new PID and mount namespace (via
``unshare``), on a bare target: only ``sandbox.target`` (no default dependencies) is started, and
the tmpfiles, sysusers, remount and similar services are masked, so nothing touches the host's
``/tmp`` or ``/var``. Inside, ``/run`` is a fresh tmpfs and ``/etc/systemd/system`` is a bind
mount of a test folder, so units installed and ``enable``d by the tests live in that folder and
vanish with it; the rest of the file system is shared. Tests drive it with
``nsenter -t PID -m -p systemctl``, which is exactly what ``[runtime] systemctl`` allows.

The fixture skips (with the reason) only when the machine cannot do this: not Linux, not root,
no ``unshare``/``nsenter``, no systemd binary, or namespaces refused by the kernel/container.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SYSTEMD_CANDIDATES = (Path("/lib/systemd/systemd"), Path("/usr/lib/systemd/systemd"))
MASKED = (
    "systemd-tmpfiles-setup.service", "systemd-tmpfiles-setup-dev.service",
    "systemd-tmpfiles-setup-dev-early.service", "systemd-tmpfiles-clean.timer",
    "systemd-tmpfiles-clean.service", "systemd-remount-fs.service", "systemd-sysusers.service",
    "systemd-update-utmp.service", "systemd-journal-flush.service",
    "systemd-modules-load.service", "systemd-sysctl.service", "systemd-journald.service",
    "systemd-journald.socket", "systemd-journald-dev-log.socket",
)
TARGET = "[Unit]\nDescription=preview-slots test sandbox\nDefaultDependencies=no\nAllowIsolate=yes\n"
BOOT_TIMEOUT = 20.0

HANDWRITTEN_ENV = (
    "# comment\n; another\n"
    "A=unquoted value   \n"
    "B='single $x \\n'\n"
    'C="back\\slash n\\n"\n'
    "D=joined\\\nline\n"
    "  E  =  spaced\n"
    "no equals sign\n"
    'F="x"y\'z\'\n'
    "G=\n"
    "A=last wins"
)
"""An env file written by hand, with what systemd 252 makes of it (both parsers must agree)."""
HANDWRITTEN_EXPECTED = {
    "A": "last wins", "B": "single $x \\n", "C": "back\\slash n\\n", "D": "joinedline",
    "E": "spaced", "F": "xy'z'", "G": "",
}


@dataclass
class SystemdSandbox:
    pid: int  # the namespaced systemd, as seen from here
    units: Path  # the folder mounted on /etc/systemd/system inside
    log: Path

    @property
    def systemctl(self) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-m", "-p", "systemctl"]

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.systemctl, *args], capture_output=True, text=True,
                              timeout=60, check=False)

    def show(self, unit: str, prop: str) -> str:
        return self.ctl("show", "--value", f"--property={prop}", unit).stdout.strip()


def _systemd_binary() -> Path | None:
    return next((p for p in SYSTEMD_CANDIDATES if os.access(p, os.X_OK)), None)


def why_no_systemd_sandbox() -> str | None:
    """The reason this machine cannot boot a sandboxed systemd, or None when it can."""
    if sys.platform != "linux":
        return "systemd needs Linux"
    if os.geteuid() != 0:
        return "booting systemd in a namespace needs root"
    for tool in ("unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) is not installed"
    if _systemd_binary() is None:
        return "no systemd binary (/lib/systemd/systemd); install the systemd package"
    probe = subprocess.run(["unshare", "--fork", "--pid", "--mount", "--mount-proc", "true"],
                           capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        return f"PID/mount namespaces are refused here: {probe.stderr.strip()}"
    return None


def _inner(units: str) -> None:
    """Runs as PID 1 of the new namespaces, then becomes systemd."""
    def mount(*args: str) -> None:
        subprocess.run(["mount", *args], check=True)

    mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run")
    os.makedirs("/run/systemd/system")
    for unit in MASKED:
        os.symlink("/dev/null", f"/run/systemd/system/{unit}")
    Path("/run/systemd/system/sandbox.target").write_text(TARGET)
    mount("--bind", units, "/etc/systemd/system")
    binary = str(_systemd_binary())
    os.execve(binary, [binary, "--system", "--unit=sandbox.target", "--log-target=console",
                       "--log-level=notice"],
              {"container": "other", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
               ":/sbin:/bin", "LANG": "C.UTF-8"})


def _child_of(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


@pytest.fixture(scope="module")
def systemd_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdSandbox]:
    reason = why_no_systemd_sandbox()
    if reason:
        pytest.skip(f"no sandboxed systemd: {reason}")
    root = tmp_path_factory.mktemp("systemd")
    units = root / "units"
    units.mkdir()
    log = root / "systemd.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["unshare", "--fork", "--pid", "--mount", "--mount-proc", "--propagation", "private",
             sys.executable, str(Path(__file__).resolve()), "inner", str(units)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    sandbox: SystemdSandbox | None = None
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            child = _child_of(proc.pid)
            if child is not None:
                candidate = SystemdSandbox(child, units, log)
                state = candidate.ctl("is-system-running").stdout.strip()
                if state in ("running", "degraded"):
                    sandbox = candidate
                    break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        if sandbox is None:
            pytest.fail(f"systemd did not come up in its namespace; its log:\n{log.read_text()}")
        yield sandbox
    finally:
        if sandbox is not None:
            os.kill(sandbox.pid, signal.SIGRTMIN + 4)  # poweroff: stops every unit
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            if sandbox is not None:
                os.kill(sandbox.pid, signal.SIGKILL)  # PID 1 gone: the namespace goes with it
            proc.kill()
            proc.wait(timeout=10)


if __name__ == "__main__" and sys.argv[1:2] == ["inner"]:
    _inner(sys.argv[2])
