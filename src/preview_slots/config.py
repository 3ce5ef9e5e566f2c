"""Configuration: one TOML file, validated into one frozen object at the edge.

Where the file is found: ``--config PATH``, else ``$PREVIEW_SLOTS_CONFIG``, else
``./preview-slots.toml``, else ``/etc/preview-slots/config.toml``; with none of them, the built-in
defaults (the seed's three slots) apply. Relative paths in the file are relative to the file.
Every error names the file, the key and what is wrong.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from preview_slots.durations import parse_duration
from preview_slots.errors import ConfigError, NotAllowedDatabase, UsageError
from preview_slots.fingerprint import default_checksums_file
from preview_slots.redact import register_secret

SLOT_ID_RE = re.compile(r"^[a-z][a-z0-9]*$")
DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HOST_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_SLOT_ID = 24
MAX_IDENT_BYTES = 63

SEARCH_PATHS = (Path("preview-slots.toml"), Path("/etc/preview-slots/config.toml"))

Manager = Literal["systemd", "supervisor", "none"]
TlsMode = Literal["auto", "internal", "off"]
CloneStrategy = Literal["wal_log", "file_copy"]


def validate_run_id(run_id: str) -> str:
    if not run_id:
        raise UsageError("--run-id must not be empty")
    if not RUN_ID_RE.fullmatch(run_id):
        raise UsageError(
            f"--run-id {run_id!r} is not allowed: use 1-128 of A-Z a-z 0-9 . _ : / -, "
            "starting with a letter or digit"
        )
    return run_id


def validate_version(version: str, *, what: str) -> str:
    if not VERSION_RE.fullmatch(version):
        raise UsageError(
            f"{what} {version!r} is not allowed: use 1-64 of A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    return version


@dataclass(frozen=True)
class PgUrl:
    """A libpq connection target. ``params`` are keyword arguments for ``psycopg.connect``."""

    url: str
    params: Mapping[str, str]

    @property
    def dbname(self) -> str:
        return self.params.get("dbname", "")

    @property
    def password(self) -> str | None:
        return self.params.get("password")

    def with_dbname(self, dbname: str) -> PgUrl:
        params = dict(self.params)
        params["dbname"] = dbname
        parts = urlsplit(self.url)
        query = f"?{parts.query}" if parts.query else ""
        url = f"{parts.scheme}://{parts.netloc}/{dbname}{query}"  # keeps "postgresql:///db"
        return PgUrl(url, params)

    def libpq_env(self) -> dict[str, str]:
        """Environment variables for psql / pg_dump / pg_restore (keeps the password off argv)."""
        names = {
            "host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
            "dbname": "PGDATABASE", "sslmode": "PGSSLMODE", "connect_timeout": "PGCONNECT_TIMEOUT",
            "application_name": "PGAPPNAME", "sslrootcert": "PGSSLROOTCERT",
        }
        return {names[k]: v for k, v in self.params.items() if k in names}

    def masked(self) -> str:
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()


def parse_pg_url(url: str, *, key: str, path: str | None) -> PgUrl:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            "expected a postgresql:// URL (postgresql://user:password@host:port/dbname)",
            path=path, key=key,
        )
    params: dict[str, str] = {}
    try:
        if parts.hostname:
            params["host"] = unquote(parts.hostname)
        if parts.port:
            params["port"] = str(parts.port)
    except ValueError as exc:
        raise ConfigError(f"bad host or port in URL: {exc}", path=path, key=key) from exc
    if parts.username:
        params["user"] = unquote(parts.username)
    if parts.password is not None:
        params["password"] = unquote(parts.password)
        register_secret(params["password"])
    dbname = unquote(parts.path.lstrip("/"))
    if dbname:
        params["dbname"] = dbname
    for item in filter(None, parts.query.split("&")):
        name, _, value = item.partition("=")
        params[unquote(name)] = unquote(value)
    if "password" in params:
        register_secret(params["password"])
    return PgUrl(url, params)


@dataclass(frozen=True)
class Slot:
    id: str
    host: str
    port: int
    static_root: Path
    database: str
    unit: str
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DatabaseSettings:
    url: PgUrl
    maintenance_db: str
    owner: str | None
    app_url: PgUrl | None
    bin_dir: Path | None

    def slot_url(self, database: str) -> PgUrl:
        """The URL a slot's service uses: ``app_url`` (or ``url``) pointed at its own database."""
        return (self.app_url or self.url).with_dbname(database)


@dataclass(frozen=True)
class LeaseSettings:
    ttl: float
    reset_ttl: float
    poll_interval: float
    quarantine_after: int

    @property
    def heartbeat_interval(self) -> float:
        return max(0.05, self.reset_ttl / 6)


@dataclass(frozen=True)
class CacheSettings:
    templates: bool
    spares: bool
    prefix: str
    clone_strategy: CloneStrategy
    background_prewarm: bool
    checksums_file: Path | None = None  # remembered source checksums; None: compute each time


@dataclass(frozen=True)
class RuntimeSettings:
    manager: Manager
    app: str
    exec_start: str
    user: str | None
    group: str | None
    working_directory: Path | None
    restart: str
    env_dir: Path
    unit_dir: Path
    systemctl: tuple[str, ...]
    systemd_analyze: tuple[str, ...]
    supervisor_conf_dir: Path
    supervisor_url: str
    stop_before_reset: bool


@dataclass(frozen=True)
class CaddySettings:
    enabled: bool
    caddyfile: Path
    binary: str
    http_port: int
    https_port: int
    tls: TlsMode
    admin: str
    proxy_address: str
    site_directives: tuple[str, ...] = ()  # extra lines in every slot's site block


@dataclass(frozen=True)
class HealthSettings:
    path: str
    timeout: float
    database_path: str | None
    ready_timeout: float = 30.0  # how long allocate waits for the slot to be healthy


@dataclass(frozen=True)
class Config:
    path: Path | None
    slots: tuple[Slot, ...]
    database: DatabaseSettings
    control_plane: PgUrl
    seeds_dir: Path
    snapshots_dir: Path
    lease: LeaseSettings
    cache: CacheSettings
    runtime: RuntimeSettings
    caddy: CaddySettings
    health: HealthSettings
    env: Mapping[str, str]

    def slot(self, slot_id: str) -> Slot:
        for slot in self.slots:
            if slot.id == slot_id:
                return slot
        known = ", ".join(s.id for s in self.slots)
        raise UsageError(f"unknown slot {slot_id!r}: the slot table has {known}")

    def slot_for_database(self, database: str) -> Slot | None:
        return next((s for s in self.slots if s.database == database), None)

    @property
    def slot_ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.slots)


# --------------------------------------------------------------------------------------------
# loading

DEFAULT_APP = "ouroboros"


def default_slots(app: str = DEFAULT_APP) -> list[dict[str, Any]]:
    return [
        {
            "id": f"preview{n}",
            "host": f"preview{n}.example.com",
            "port": 3100 + n,
            "static_root": f"/srv/oroboros/infra/web-preview-{n}",
            "database": f"app_preview_{n}",
            "unit": f"{app}-web@preview{n}",
        }
        for n in (1, 2, 3)
    ]


_SECTIONS: dict[str, set[str]] = {
    "slots": {"id", "host", "port", "static_root", "database", "unit", "env"},
    "database": {"url", "maintenance_db", "owner", "app_url", "bin_dir"},
    "control_plane": {"url"},
    "seeds": {"dir"},
    "snapshots": {"dir"},
    "lease": {"ttl", "reset_ttl", "poll_interval", "quarantine_after"},
    "cache": {"templates", "spares", "prefix", "clone_strategy", "background_prewarm",
              "checksums_file"},
    "runtime": {
        "manager", "app", "exec_start", "user", "group", "working_directory", "restart",
        "env_dir", "unit_dir", "systemctl", "systemd_analyze", "supervisor_conf_dir",
        "supervisor_url", "stop_before_reset",
    },
    "caddy": {"enabled", "caddyfile", "binary", "http_port", "https_port", "tls", "admin",
              "proxy_address", "site_directives"},
    "health": {"path", "timeout", "database_path", "ready_timeout"},
    "env": set(),
}


def find_config(explicit: str | None, env_value: str | None) -> Path | None:
    """Which file to load, following the documented search order; None means built-in defaults."""
    if explicit:
        return Path(explicit)
    if env_value:
        return Path(env_value)
    for candidate in SEARCH_PATHS:
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path | None) -> Config:
    if path is None:
        return build_config({}, None)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError("file not found", path=str(path)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(path)) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=str(path)) from exc
    return build_config(data, path)


class _Reader:
    """Typed access to one TOML table, with errors that name file and key."""

    def __init__(self, data: Mapping[str, Any], prefix: str, path: Path | None) -> None:
        self.data = data
        self.prefix = prefix
        self.path = str(path) if path else None
        self.base = path.parent if path else Path.cwd()

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, path=self.path or "<defaults>", key=f"{self.prefix}{key}")

    def check_keys(self, allowed: set[str]) -> None:
        for key in self.data:
            if key not in allowed:
                hint = ", ".join(sorted(allowed))
                raise self.error(key, f"unknown key (allowed here: {hint})")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) and kind is not bool and kind != (bool,):
            raise self.error(key, f"expected {_kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise self.error(key, f"expected {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def text(self, key: str, default: str | None) -> Any:
        value = self.get(key, str, default)
        if value is not None and ("\n" in value or "\x00" in value):
            raise self.error(key, "must not contain a newline or NUL")
        return value

    def path_value(self, key: str, default: str | None) -> Path | None:
        value = self.text(key, default)
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base / p)

    def duration(self, key: str, default: str) -> float:
        value = self.get(key, (str, int, float), default)
        try:
            return parse_duration(value, what="value")
        except UsageError as exc:
            raise self.error(key, exc.message.removeprefix("value: ")) from exc

    def port(self, key: str, default: int) -> int:
        value = self.get(key, int, default)
        if not 1 <= value <= 65535:
            raise self.error(key, f"port must be 1-65535, got {value}")
        return int(value)

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> Any:
        value = self.text(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def argv(self, key: str, default: list[str]) -> tuple[str, ...]:
        value = self.get(key, list, default)
        if not value or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, "expected a non-empty list of strings (an argv, no shell)")
        return tuple(value)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _table(data: Mapping[str, Any], name: str, path: Path | None) -> _Reader:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError("expected a table", path=str(path) if path else None, key=name)
    reader = _Reader(value, f"{name}.", path)
    reader.check_keys(_SECTIONS[name])
    return reader


def _env_table(value: Any, reader: _Reader, key: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise reader.error(key, "expected a table of NAME = \"value\"")
    out: dict[str, str] = {}
    for name, item in value.items():
        full = f"{key}.{name}" if key else name
        if not ENV_KEY_RE.fullmatch(name):
            raise reader.error(full, "not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise reader.error(full, "expected a string or number")
        text = str(item)
        if any(c in text for c in "\n\r\x00"):
            raise reader.error(full, "a newline, carriage return or NUL cannot be passed through an "
                               "EnvironmentFile; put the value in a file and pass its path instead")
        out[name] = text
    return out


def _lines(reader: _Reader, key: str) -> tuple[str, ...]:
    value = reader.get(key, list, [])
    if not all(isinstance(v, str) and v.strip() and not any(c in v for c in "\n\r\x00")
               for v in value):
        raise reader.error(key, "expected a list of one-line strings")
    return tuple(value)


def check_database_name(name: str) -> str | None:
    """Why ``name`` is not an acceptable slot database name, or None when it is."""
    if not DB_NAME_RE.fullmatch(name):
        return "must match ^[a-z_][a-z0-9_]*$ (lower-case letters, digits, underscore)"
    if len(name.encode()) > MAX_IDENT_BYTES:
        return f"must be at most {MAX_IDENT_BYTES} bytes"
    return None


RESERVED_DATABASES = frozenset({"postgres", "template0", "template1"})


def _slots(data: Mapping[str, Any], path: Path | None, app: str, prefix: str) -> tuple[Slot, ...]:
    raw = data.get("slots", default_slots(app))
    where = str(path) if path else None
    if not isinstance(raw, list) or not raw:
        raise ConfigError("expected at least one [[slots]] table", path=where, key="slots")
    slots: list[Slot] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ConfigError("expected a table", path=where, key=f"slots[{index}]")
        r = _Reader(item, f"slots[{index}].", path)
        r.check_keys(_SECTIONS["slots"])
        for required in ("id", "port"):
            if required not in item:
                raise r.error(required, "is required")
        slot_id = r.text("id", None)
        if not SLOT_ID_RE.fullmatch(slot_id) or len(slot_id) > MAX_SLOT_ID:
            raise r.error("id", f"{slot_id!r} must match ^[a-z][a-z0-9]*$ and be at most "
                          f"{MAX_SLOT_ID} characters")
        database = r.text("database", f"app_{slot_id}")
        problem = check_database_name(database)
        if problem:
            raise r.error("database", f"{database!r} {problem}")
        if database in RESERVED_DATABASES or database.startswith(prefix):
            raise NotAllowedDatabase(database, f"{r.path or '<defaults>'}: {r.prefix}database is a "
                                     "system database or uses preview-slots' reserved prefix "
                                     f"{prefix!r}; it can never be a slot database")
        host = r.text("host", f"{slot_id}.example.com").lower()
        if not HOST_RE.fullmatch(host):
            raise r.error("host", f"{host!r} is not a valid host name")
        unit = r.text("unit", f"{app}-web@{slot_id}")
        if not re.fullmatch(r"[A-Za-z0-9:_.@-]+", unit):
            raise r.error("unit", f"{unit!r} is not a valid unit or program name")
        slots.append(Slot(
            id=slot_id, host=host, port=r.port("port", 0), database=database, unit=unit,
            static_root=r.path_value("static_root", f"/srv/{app}/web-{slot_id}") or Path(),
            env=_env_table(item.get("env", {}), r, "env"),
        ))
    for attr in ("id", "database", "port", "host", "unit"):
        seen: dict[Any, int] = {}
        for index, slot in enumerate(slots):
            value = getattr(slot, attr)
            if value in seen:
                raise ConfigError(f"{value!r} is used by slots[{seen[value]}] too",
                                  path=where, key=f"slots[{index}].{attr}")
            seen[value] = index
    return tuple(slots)


def _checksums_file(r: _Reader) -> Path | None:
    """``[cache] checksums_file``: a path, "" for none, or the per-user default."""
    if "checksums_file" not in r.data:
        return default_checksums_file()
    return r.path_value("checksums_file", None) if r.text("checksums_file", None) else None


def build_config(data: Mapping[str, Any], path: Path | None) -> Config:
    where = str(path) if path else None
    for key in data:
        if key not in _SECTIONS:
            raise ConfigError(f"unknown section (allowed: {', '.join(sorted(_SECTIONS))})",
                              path=where, key=key)
    rt = _table(data, "runtime", path)
    app = rt.text("app", DEFAULT_APP)
    if not re.fullmatch(r"[a-z][a-z0-9-]*", app):
        raise rt.error("app", f"{app!r} must match ^[a-z][a-z0-9-]*$")
    cache_r = _table(data, "cache", path)
    prefix = cache_r.text("prefix", "pslots_")
    if not re.fullmatch(r"[a-z][a-z0-9]*_", prefix) or len(prefix) > 12:
        raise cache_r.error("prefix", "must match ^[a-z][a-z0-9]*_$ and be at most 12 characters")
    cache = CacheSettings(
        templates=cache_r.get("templates", bool, True),
        spares=cache_r.get("spares", bool, True),
        prefix=prefix,
        clone_strategy=cache_r.choice("clone_strategy", "file_copy", ("wal_log", "file_copy")),
        background_prewarm=cache_r.get("background_prewarm", bool, True),
        checksums_file=_checksums_file(cache_r),
    )
    slots = _slots(data, path, app, prefix)

    db = _table(data, "database", path)
    db_url = parse_pg_url(db.text("url", "postgresql:///postgres"), key="database.url", path=where)
    app_url_text = db.text("app_url", None)
    maintenance = db.text("maintenance_db", db_url.dbname or "postgres")
    owner = db.text("owner", None)
    if owner is not None and not re.fullmatch(r"[a-z_][a-z0-9_]*", owner):
        raise db.error("owner", f"{owner!r} must match ^[a-z_][a-z0-9_]*$")
    database = DatabaseSettings(
        url=db_url.with_dbname(maintenance),
        maintenance_db=maintenance,
        owner=owner,
        app_url=parse_pg_url(app_url_text, key="database.app_url", path=where)
        if app_url_text else None,
        bin_dir=db.path_value("bin_dir", None),
    )
    cp = _table(data, "control_plane", path)
    control_plane = parse_pg_url(
        cp.text("url", db_url.with_dbname("preview_slots").url), key="control_plane.url",
        path=where,
    )
    if not control_plane.dbname:
        raise cp.error("url", "must name a database (postgresql://.../preview_slots)")
    for slot in slots:
        if slot.database in (control_plane.dbname, maintenance):
            raise NotAllowedDatabase(
                slot.database, f"{where or '<defaults>'}: slots.{slot.id}.database is the "
                "control-plane or maintenance database; it can never be a slot database",
            )

    lease_r = _table(data, "lease", path)
    lease = LeaseSettings(
        ttl=lease_r.duration("ttl", "2h"),
        reset_ttl=lease_r.duration("reset_ttl", "2m"),
        poll_interval=lease_r.duration("poll_interval", "5s"),
        quarantine_after=lease_r.get("quarantine_after", int, 3),
    )
    if lease.ttl <= 0 or lease.reset_ttl <= 0:
        raise lease_r.error("ttl", "lease durations must be positive")

    seeds = _table(data, "seeds", path).path_value("dir", "db/seeds")
    snapshots = _table(data, "snapshots", path).path_value("dir", "db/snapshots")

    runtime = RuntimeSettings(
        manager=rt.choice("manager", "systemd", ("systemd", "supervisor", "none")),
        app=app,
        exec_start=rt.text("exec_start", f"/usr/local/bin/{app}-web"),
        user=rt.text("user", None),
        group=rt.text("group", None),
        working_directory=rt.path_value("working_directory", None),
        restart=rt.choice("restart", "on-failure",
                          ("no", "on-failure", "always", "on-abnormal", "on-abort")),
        env_dir=rt.path_value("env_dir", f"/etc/{app}/preview") or Path(),
        unit_dir=rt.path_value("unit_dir", "/etc/systemd/system") or Path(),
        systemctl=rt.argv("systemctl", ["systemctl"]),
        systemd_analyze=rt.argv("systemd_analyze", ["systemd-analyze"]),
        supervisor_conf_dir=rt.path_value("supervisor_conf_dir", "/etc/supervisor/conf.d")
        or Path(),
        supervisor_url=rt.text("supervisor_url", "unix:///var/run/supervisor.sock"),
        stop_before_reset=rt.get("stop_before_reset", bool, True),
    )
    cd = _table(data, "caddy", path)
    caddy = CaddySettings(
        enabled=cd.get("enabled", bool, True),
        caddyfile=cd.path_value("caddyfile", "infra/caddy/Caddyfile") or Path(),
        binary=cd.text("binary", "caddy"),
        http_port=cd.port("http_port", 80),
        https_port=cd.port("https_port", 443),
        tls=cd.choice("tls", "auto", ("auto", "internal", "off")),
        admin=cd.text("admin", "localhost:2019"),
        proxy_address=cd.text("proxy_address", "127.0.0.1"),
        site_directives=_lines(cd, "site_directives"),
    )
    for slot in slots:
        if slot.port in (caddy.http_port, caddy.https_port):
            raise ConfigError(f"port {slot.port} of slot {slot.id} is also Caddy's port",
                              path=where, key="caddy.http_port" if slot.port == caddy.http_port
                              else "caddy.https_port")
    hl = _table(data, "health", path)
    health_path = hl.text("path", "/health")
    if not health_path.startswith("/"):
        raise hl.error("path", "must start with /")
    health = HealthSettings(
        path=health_path,
        timeout=hl.duration("timeout", "5s"),
        database_path=hl.text("database_path", None),
        ready_timeout=hl.duration("ready_timeout", "30s"),
    )
    if health.database_path is not None and not health.database_path.startswith("/"):
        raise hl.error("database_path", "must start with /")
    env_r = _Reader(data.get("env", {}), "env.", path)
    return Config(
        path=path, slots=slots, database=database, control_plane=control_plane,
        seeds_dir=seeds or Path(), snapshots_dir=snapshots or Path(), lease=lease, cache=cache,
        runtime=runtime, caddy=caddy, health=health,
        env=_env_table(data.get("env", {}), env_r, ""),
    )
