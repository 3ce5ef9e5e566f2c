"""Template cache and warm spares: resets whose latency does not grow with the data.

* A **template** is a database loaded once per source (kind, version, checksum), named
  ``<prefix>tpl_<kind>_<version>_<checksum12>``, closed to connections and marked as a template.
  It is built under another name (``..._b``) and renamed into place only when complete, so a
  template that exists is a finished one. A changed seed builds a new template.
* A **spare** (``<prefix>spare_<slot>``) is a slot's next database, cloned from a template ahead
  of time. The next reset of that slot with the same source renames it into place (milliseconds)
  instead of cloning (seconds for large databases). Its comment records its template and when it
  was built.

Everything here goes through :class:`~preview_slots.pgadmin.SlotServer`, whose guard admits only
these names and the slot databases.
"""

from __future__ import annotations

import logging
import re
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg import errors as pg_errors

from preview_slots.config import Config, Slot
from preview_slots.errors import ResetFailed
from preview_slots.pgadmin import SlotServer, spare_name, template_name
from preview_slots.sources import Source, apply_seed, restore_snapshot

log = logging.getLogger(__name__)

TEMPLATE_NAMESPACE = 0x70737470  # "pstp": one builder per template
SPARE_NAMESPACE = 0x70737370  # "pssp": one builder/user per slot's spare
SPARE_COMMENT = re.compile(r"^preview-slots spare slot=(?P<slot>\S+) template=(?P<tpl>\S+) "
                           r"built=(?P<built>\S+)$")


def template_for(config: Config, source: Source) -> str:
    return template_name(config, source.kind, source.version, source.checksum)


def _key(text: str) -> int:
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


@contextmanager
def _lock(server: SlotServer, namespace: int, name: str, *, wait: bool) -> Iterator[bool]:
    """A session advisory lock on the slot server; yields whether we got it."""
    key = _key(name)
    if wait:
        # the holder keeps it for as long as a build takes, far longer than the session's
        # lock_timeout for a large seed: wait without one (a holder that dies releases it)
        previous = server._exec("SHOW lock_timeout")[0]["lock_timeout"]
        server._exec("SET lock_timeout = 0")
        try:
            server._exec("SELECT pg_advisory_lock(%s, %s)", (namespace, key))
        finally:
            server._exec("SELECT set_config('lock_timeout', %s, false)", (previous,))
        got = True
    else:
        got = bool(server._exec("SELECT pg_try_advisory_lock(%s, %s) AS ok",
                                (namespace, key))[0]["ok"])
    try:
        yield got
    finally:
        if got:
            server._exec("SELECT pg_advisory_unlock(%s, %s)", (namespace, key))


def ensure_template(config: Config, server: SlotServer, source: Source,
                    application_name: str) -> tuple[str, bool]:
    """The template for ``source``, built now if missing. Returns (name, built_now)."""
    name = template_for(config, source)
    if server.exists(name):
        return name, False
    with _lock(server, TEMPLATE_NAMESPACE, name, wait=True):
        if server.exists(name):  # another process built it while we waited
            return name, False
        building = f"{name}_b"
        if server.exists(building):  # a builder died half way: never use its leftovers
            server.drop(building)
        server.create(building, comment=f"preview-slots template building {source.kind} "
                      f"{source.version} sha256={source.checksum}")
        try:
            if source.kind == "seed":
                apply_seed(config, source, building, prelude=None,
                           application_name=application_name)
            else:
                restore_snapshot(config, source, building, application_name=application_name)
            server.set_comment(building, f"preview-slots template {source.kind} {source.version} "
                               f"sha256={source.checksum}")
            server.set_template(building, is_template=True)
            server.rename(building, name)
        except BaseException as exc:
            if isinstance(exc, ResetFailed) and exc.phase == "load":
                exc.blames_source = True  # no slot is involved yet: the source is at fault
            server.drop(building)
            raise
    return name, True


def clone(config: Config, server: SlotServer, template: str, target: str,
          comment: str) -> None:
    """``CREATE DATABASE target TEMPLATE template``; stray sessions on the template (case C-02)
    are terminated right before, with bounded retries."""
    strategy = config.cache.clone_strategy
    for attempt in range(5):
        server._exec("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_backend_pid()", (template,))
        try:
            server.create(target, template=template, strategy=strategy, comment=comment)
            return
        except pg_errors.ObjectInUse as exc:
            if attempt == 4:
                raise ResetFailed(f"could not clone {template}: {exc}; a session keeps "
                                  "reconnecting to the template", phase="clone") from exc
            time.sleep(0.05 * (attempt + 1))


@dataclass(frozen=True)
class Spare:
    name: str
    template: str
    built_at: str


def find_spare(config: Config, server: SlotServer, slot: Slot, template: str) -> Spare | None:
    name = spare_name(config, slot)
    comment = server.comment(name)
    match = SPARE_COMMENT.match(comment or "")
    if match is None or match["slot"] != slot.id or match["tpl"] != template:
        return None
    return Spare(name, template, match["built"])


@contextmanager
def spare_lock(server: SlotServer, slot: Slot, *, wait: bool) -> Iterator[bool]:
    with _lock(server, SPARE_NAMESPACE, slot.id, wait=wait) as got:
        yield got


def prewarm(config: Config, slot: Slot, source: Source) -> dict[str, object]:
    """Build (or keep) the slot's spare for ``source``. Never touches the slot's database."""
    started = time.monotonic()
    app_name = f"preview-slots prewarm slot={slot.id}"
    with SlotServer(config, application_name=app_name) as server:
        template, built_template = ensure_template(config, server, source, app_name)
        with spare_lock(server, slot, wait=True):
            existing = find_spare(config, server, slot, template)
            if existing is not None:
                return {"slot_id": slot.id, "spare": existing.name, "template": template,
                        "built": False, "built_at": existing.built_at}
            name = spare_name(config, slot)
            if server.exists(name):
                server.drop(name)
            built_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            clone(config, server, template, name,
                  f"preview-slots spare slot={slot.id} template={template} built={built_at}")
    return {"slot_id": slot.id, "spare": name, "template": template, "built": True,
            "built_at": built_at, "template_built": built_template,
            "seconds": round(time.monotonic() - started, 3)}


def listing(config: Config) -> list[dict[str, object]]:
    with SlotServer(config) as server:
        rows = server.databases(config.cache.prefix)
    out = []
    for row in rows:
        name = row["datname"]
        kind = "template" if "_tpl_" in name else "spare" if "_spare_" in name else "working"
        if not (row["comment"] or "").startswith("preview-slots "):
            kind = "unmarked"  # under our prefix but not made by preview-slots: never dropped
        out.append({"name": name, "kind": kind, "size_bytes": row["size"],
                    "is_template": row["datistemplate"], "comment": row["comment"]})
    return out


def prune(config: Config, current: set[str], *, everything: bool = False,
          dry_run: bool = False) -> list[str]:
    """Drop templates not in ``current`` (and spares cloned from them); all of them with
    ``everything``. Returns what was (or would be) dropped."""
    dropped: list[str] = []
    with SlotServer(config, application_name="preview-slots cache prune") as server:
        for row in server.databases(config.cache.prefix):
            name = row["datname"]
            if not (row["comment"] or "").startswith("preview-slots "):
                continue  # not made by preview-slots (no marker): never ours to drop
            stale = False
            if "_tpl_" in name:
                stale = everything or name not in current
            elif "_spare_" in name:
                match = SPARE_COMMENT.match(row["comment"] or "")
                stale = everything or match is None or match["tpl"] not in current
            if not stale:
                continue
            dropped.append(name)
            if not dry_run:
                if row["datistemplate"]:
                    server.set_template(name, is_template=False)
                server.drop(name)
    return dropped
