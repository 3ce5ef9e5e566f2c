"""Files and folders the runtime manages: read what is there, diff, install atomically.

Every write goes to a temporary file in the target's own folder (created with mode 0600 by
``mkstemp``, whatever the umask), gets its final mode and group with ``fchmod``/``fchown``, is
flushed to disk and then renamed over the target: a reader sees the old file or the new one,
never half of one, and never a moment where it is world-readable.
"""

from __future__ import annotations

import difflib
import grp
import os
import pwd
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from preview_slots.errors import ConfigError, RuntimeFailed
from preview_slots.redact import mask

DIR_MODE = 0o755


@dataclass(frozen=True)
class Existing:
    """What is on disk now."""

    content: str
    mode: int
    uid: int
    gid: int


def read_existing(path: Path) -> Existing | None:
    """The file's content and metadata, or None when there is no file."""
    try:
        st = path.stat()
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        raise RuntimeFailed(f"cannot read {path}: permission denied (run provision as the user "
                            "that owns the managed files, usually root)") from exc
    except UnicodeDecodeError:
        content = "<not UTF-8 text>"
    except OSError as exc:
        raise RuntimeFailed(f"cannot read {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise RuntimeFailed(f"{path} exists and is not a regular file; move it away")
    return Existing(content, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


def lookup_user(name: str | None) -> pwd.struct_passwd | None:
    if name is None:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"user {name!r} does not exist on this host (create it: "
                          f"useradd --system {name})", key="runtime.user") from None


def lookup_group(name: str | None) -> int | None:
    if name is None:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError(f"group {name!r} does not exist on this host (create it: "
                          f"groupadd --system {name})", key="runtime.group") from None


def owner_label(uid: int | None, gid: int | None) -> str:
    """``user:group`` for display; ``None`` means the caller's own id."""
    u = os.geteuid() if uid is None else uid
    g = os.getegid() if gid is None else gid
    try:
        user = pwd.getpwuid(u).pw_name
    except KeyError:
        user = str(u)
    try:
        group = grp.getgrgid(g).gr_name
    except KeyError:
        group = str(g)
    return f"{user}:{group}"


def meta_matches(existing: Existing, mode: int, uid: int | None, gid: int | None) -> bool:
    return (existing.mode == mode
            and (uid is None or existing.uid == uid)
            and (gid is None or existing.gid == gid))


def masked_diff(old: str | None, new: str, path: Path) -> list[str]:
    """A unified diff from what is there to what will be, every line masked."""
    before = (old or "").splitlines(keepends=True)
    after = new.splitlines(keepends=True)
    lines = difflib.unified_diff(
        before, after, fromfile=str(path) if old is not None else "/dev/null",
        tofile=str(path), n=1,
    )
    return [_mask_secret_assignment(mask(line.rstrip("\n"))) for line in lines]


_ASSIGNMENT = re.compile(r"^(?P<head>[-+ ]?\s*(?:export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=)"
                         r"(?P<value>.+)$")


def _mask_secret_assignment(line: str) -> str:
    """``NAME=value`` with a secret-looking NAME, on either side of a diff: the value is masked
    even when it is no longer in the configuration (a removed or changed secret)."""
    from preview_slots.runtime.envfile import SECRET_KEY_RE

    match = _ASSIGNMENT.match(line)
    if match and SECRET_KEY_RE.search(match["name"]) and match["value"].strip() != "***":
        return f"{match['head']}***"
    return line


def make_dirs(path: Path, mode: int = DIR_MODE, uid: int | None = None,
              gid: int | None = None) -> None:
    """Create ``path`` and missing parents with ``mode`` exactly (not umask-dependent)."""
    missing = []
    for p in (path, *path.parents):
        if p.exists():
            break
        missing.append(p)
    for p in reversed(missing):
        try:
            p.mkdir(mode=mode)
        except FileExistsError:
            continue
        except OSError as exc:
            raise RuntimeFailed(f"cannot create folder {p}: {exc.strerror}") from exc
        os.chmod(p, mode)
        if p == path and (uid is not None or gid is not None):
            os.chown(p, -1 if uid is None else uid, -1 if gid is None else gid)


def install_file(path: Path, content: str, *, mode: int, uid: int | None = None,
                 gid: int | None = None, tmp: Path | None = None) -> None:
    """Atomically replace ``path`` with ``content`` (mode and owner set before the rename).

    ``tmp``: an already written temporary file (from :func:`write_temp`) to rename instead.
    """
    make_dirs(path.parent)
    temp = tmp or write_temp(path, content, mode=mode, uid=uid, gid=gid)
    try:
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise RuntimeFailed(f"cannot install {path}: {exc.strerror}") from exc
    _fsync_dir(path.parent)


def write_temp(path: Path, content: str, *, mode: int, uid: int | None = None,
               gid: int | None = None) -> Path:
    """Write ``content`` to a new temporary file beside ``path``; the caller renames or removes."""
    make_dirs(path.parent)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise RuntimeFailed(f"cannot write in {path.parent}: {exc.strerror}") from exc
    temp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), mode)
            if uid is not None or gid is not None:
                os.fchown(fh.fileno(), -1 if uid is None else uid, -1 if gid is None else gid)
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise RuntimeFailed(f"cannot write {path}: {exc.strerror}") from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
