"""Where a slot's data comes from: versioned seeds (SQL files) and snapshots (pg_dump archives).

Everything here is checked before anything is dropped: a missing folder, an empty seed, a file
that is not an archive, an archive newer than our pg_restore, an extension the server lacks.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from preview_slots.config import Config, PgUrl, validate_version
from preview_slots.errors import (
    CommandFailed,
    LeaseLost,
    OperationFailed,
    ResetFailed,
    SourceError,
)
from preview_slots.fingerprint import Remembered, identity
from preview_slots.local.pg import pg_bin_dir
from preview_slots.runner import run
from preview_slots.seedscan import scan

PSQL_ERROR = re.compile(
    r"psql:(?P<file>[^\n]*?):(?P<line>\d+): ERROR:\s+(?:(?P<state>[0-9A-Z]{5}): )?(?P<msg>[^\n]*)"
)


@dataclass(frozen=True)
class Source:
    """A loadable version: the files (seed) or the archive (snapshot), and their checksum."""

    kind: str  # "seed" | "snapshot"
    version: str
    checksum: str
    files: tuple[Path, ...]
    extensions: tuple[str, ...] = field(default=())

    @property
    def seed_version(self) -> str | None:
        return self.version if self.kind == "seed" else None

    @property
    def snapshot_version(self) -> str | None:
        return self.version if self.kind == "snapshot" else None


def tool(config: Config, name: str) -> str:
    return str(pg_bin_dir(config.database.bin_dir) / name)


def libpq_env(target: PgUrl, application_name: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
           "PGCONNECT_TIMEOUT": "10"}
    env.update(target.libpq_env())
    env["PGAPPNAME"] = application_name
    return env


def resolve_seed(config: Config, version: str, *, remember: bool = True) -> Source:
    """The seed folder ``version``: its files, checked, and their checksum (``remember``: the
    checksum may be stored for the next command, see :mod:`preview_slots.fingerprint`)."""
    validate_version(version, what="--seed-version")
    folder = config.seeds_dir / version
    if not folder.is_dir():
        raise SourceError(f"seed version {version!r} not found: no folder {folder}")
    files = tuple(sorted(p for p in folder.iterdir() if p.suffix == ".sql" and p.is_file()))
    if not files:
        raise SourceError(f"seed version {version!r} is empty: no *.sql files in {folder}")
    memo = Remembered(config.cache.checksums_file, read_only=not remember)
    key = identity(files, kind="seed")
    known = memo.get(key)
    if known and isinstance(known.get("checksum"), str):  # same files, scanned before
        return Source("seed", version, known["checksum"], files)
    digest = hashlib.sha256()
    for path in files:
        data = path.read_bytes()
        digest.update(path.name.encode() + b"\0")
        digest.update(data)
        digest.update(b"\0")
        found = scan(data.decode("utf-8", errors="replace"))
        if found.meta_commands:
            where = ", ".join(f"{m.command} at line {m.line}" for m in found.meta_commands[:3])
            raise SourceError(
                f"seed {version!r} file {path.name} uses psql meta-commands that could leave the "
                f"slot's database or its transaction ({where}): seeds may use SQL and "
                f"\\set/\\echo/\\if only"
            )
        if found.transaction_control:
            where = ", ".join(f"{m.command} at line {m.line}"
                              for m in found.transaction_control[:3])
            raise SourceError(
                f"seed {version!r} file {path.name} ends the seed's transaction ({where}): a "
                "seed runs in one transaction so that a failure keeps nothing, and what follows "
                "such a statement would run outside it; remove it"
            )
    memo.put(key, {"checksum": digest.hexdigest()})
    return Source("seed", version, digest.hexdigest(), files)


def resolve_snapshot(config: Config, version: str, *, remember: bool = True) -> Source:
    """The archive ``version``: listed by pg_restore (readable, its extensions) and checksummed."""
    validate_version(version, what="--snapshot-version")
    path = config.snapshots_dir / f"{version}.dump"
    if not path.is_file():
        raise SourceError(f"snapshot version {version!r} not found: no file {path}")
    memo = Remembered(config.cache.checksums_file, read_only=not remember)
    key = identity([path, Path(tool(config, "pg_restore"))], kind="snapshot")
    known = memo.get(key)
    if known and isinstance(known.get("checksum"), str):  # this archive, read before
        return Source("snapshot", version, known["checksum"], (path,),
                      tuple(str(e) for e in known.get("extensions", ())))
    try:
        listing = run([tool(config, "pg_restore"), "--list", "--", str(path)], timeout=60,
                      what="pg_restore --list").stdout
    except CommandFailed as exc:
        raise SourceError(
            f"snapshot {path} cannot be read by {tool(config, 'pg_restore')}: "
            f"{exc.stderr_tail.splitlines()[-1] if exc.stderr_tail else exc.message} "
            "(is it a pg_dump -Fc archive made by a pg_dump no newer than this pg_restore?)"
        ) from exc
    extensions = tuple(sorted(set(re.findall(r"^\d+; \d+ \d+ EXTENSION - (\S+) ", listing,
                                             re.M))))
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    memo.put(key, {"checksum": digest.hexdigest(), "extensions": list(extensions)})
    return Source("snapshot", version, digest.hexdigest(), (path,), extensions)


def check_extensions(source: Source, available: set[str]) -> None:
    missing = [e for e in source.extensions if e not in available]
    if missing:
        raise SourceError(
            f"snapshot {source.version!r} needs extension(s) {', '.join(missing)} which the slot "
            "server does not have: install them on the server (e.g. postgresql-contrib) first"
        )


def fence_prelude(expected_comment: str) -> str:
    """SQL run first inside the seeding transaction: abort unless the database we are connected
    to still carries our generation's marker. A stale seeder that reaches a database built for a
    newer lease changes nothing."""
    literal = expected_comment.replace("'", "''")
    return (
        "DO $preview_slots$ BEGIN\n"
        "  IF coalesce(shobj_description((SELECT oid FROM pg_database\n"
        "      WHERE datname = current_database()), 'pg_database'), '') <> "
        f"'{literal}' THEN\n"
        "    RAISE EXCEPTION 'preview-slots fence: this database is not ours any more '\n"
        "      'lease lost' USING ERRCODE = 'P0001';\n"
        "  END IF;\n"
        "END $preview_slots$;\n"
    )


def apply_seed(config: Config, source: Source, database: str, *, prelude: str | None,
               application_name: str, timeout: float = 3600) -> None:
    """All files, in order, in one transaction, stopping at the first error (psql semantics)."""
    argv = [tool(config, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
            "--single-transaction", "--no-psqlrc", "-o", os.devnull]
    if prelude:
        argv += ["-c", prelude]
    for path in source.files:
        argv += ["-f", str(path)]
    env = libpq_env(config.database.url.with_dbname(database), application_name)
    result = run(argv, timeout=timeout, env=env, check=False, what="psql")
    if result.returncode == 0:
        return
    raise seed_error(source, result.stderr, result.returncode)


def seed_error(source: Source, stderr: str, returncode: int) -> OperationFailed:
    match = PSQL_ERROR.search(stderr)
    if match:
        where = Path(match["file"]).name
        state = match["state"]
        if "preview-slots fence" in match["msg"]:
            return LeaseLost("lease lost: the slot database now belongs to a newer lease; "
                             "this run changed nothing")
        line = _error_line(source, match["file"], int(match["line"]), stderr[match.end():])
        return ResetFailed(
            f"seed {source.version!r} failed in {where} line {line}"
            f"{f' (SQLSTATE {state})' if state else ''}: {match['msg'].strip()}; "
            "nothing was kept (one transaction)", phase="load", sqlstate=state,
        )
    if "preview-slots fence" in stderr:
        return LeaseLost("lease lost: the slot database now belongs to a newer lease")
    tail = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {returncode}"
    return ResetFailed(f"seed {source.version!r} failed: {tail}", phase="load")


def _error_line(source: Source, file: str, sent_at: int, after: str) -> str:
    """Where in the file the error is. psql names the line a statement ends on; the server's
    ``LINE n:`` counts from the statement's start, which the seed scanner knows. Falls back to
    psql's line (e.g. an error in COPY data)."""
    within = re.match(r"\s*(?:LINE (\d+):)?", after)
    path = next((p for p in source.files if str(p) == file or p.name == Path(file).name), None)
    if not within or not within.group(1) or path is None:
        return str(sent_at)
    try:
        statement = scan(path.read_text(errors="replace")).statement_ending_at(sent_at)
    except OSError:
        return str(sent_at)
    if statement is None:
        return str(sent_at)
    first, last = statement
    line = first + int(within.group(1)) - 1
    if first == last or not first <= line <= last:
        return str(sent_at)
    return f"{line} (in the statement at lines {first}-{last})"


def restore_snapshot(config: Config, source: Source, database: str, *,
                     application_name: str, timeout: float = 3600) -> None:
    env = libpq_env(config.database.url.with_dbname(database), application_name)
    argv = [tool(config, "pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
            "--single-transaction", "--dbname", database]
    if config.database.owner:
        argv += ["--role", config.database.owner]
    argv += ["--", str(source.files[0])]
    result = run(argv, timeout=timeout, env=env, check=False, what="pg_restore")
    if result.returncode != 0:
        lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "error:" in ln), lines[-1] if lines else "")
        raise ResetFailed(
            f"restore of snapshot {source.version!r} failed (exit {result.returncode}): "
            f"{detail.strip()}; nothing was kept", phase="load",
        )


def create_snapshot(config: Config, database: str, version: str, *, force: bool = False) -> Path:
    """``pg_dump -Fc`` of a slot database into ``<snapshots.dir>/<version>.dump`` (atomically)."""
    validate_version(version, what="--version")
    target = config.snapshots_dir / f"{version}.dump"
    if target.exists() and not force:
        raise SourceError(f"snapshot {target} already exists: versions are immutable; pick a new "
                          "version (or pass --force to replace it)")
    config.snapshots_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    env = libpq_env(config.database.url.with_dbname(database), "preview-slots snapshot")
    try:
        run([tool(config, "pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
             "--file", str(tmp), "--dbname", database], timeout=3600, env=env, what="pg_dump")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
