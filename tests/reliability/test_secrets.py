"""With debug logging on, through a full cycle and through failing connections, the database
password appears in no output, no log line, no control-plane row and no dry-run plan."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from urllib.parse import quote

from preview_slots.local.pg import LocalPostgres, free_port
from tests.conftest import Env
from tests.reliability.figures import record, verdict
from tests.reliability.harness import add_seeds, allocate_args

TABLES = ("slots", "leases", "lease_events", "preview_db_resets", "waiters",
          "preview_slots_migrations")
WRONG_PASSWORD = "Wr0ng-Pa55word-7f3a"


def variant(env: Env, name: str, pattern: str, replacement: str) -> dict[str, str]:
    """A copy of the env's config with one substitution; returns the env vars that select it."""
    text, count = re.subn(pattern, replacement, env.path.read_text(), count=1, flags=re.M)
    assert count == 1, pattern
    path = env.tmp / f"{name}.toml"
    path.write_text(text)
    return {"PREVIEW_SLOTS_CONFIG": str(path)}


def test_password_appears_nowhere(make_env: Callable[..., Env], pg: LocalPostgres) -> None:
    env = make_env(slots=1, lease='reset_ttl = "3s"\npoll_interval = "1s"')
    add_seeds(env)
    slot = env.config.slots[0].id
    runs: list[tuple[str, subprocess.CompletedProcess[str]]] = []

    def cli(what: str, *args: str, config: dict[str, str] | None = None) -> int:
        result = env.cli("--debug", *args, env=config)
        runs.append((what, result))
        return result.returncode

    log_start = pg.logfile.stat().st_size
    codes = {
        "allocate": cli("allocate", *allocate_args("sec-1", "tiny")),
        "renew": cli("renew", "renew", "--run-id", "sec-1", "--ttl", "10m"),
        "status": cli("status", "status"),
        "history": cli("history", "history"),
        "release": cli("release", "release", "--run-id", "sec-1"),
        "allocate --dry-run": cli("plan", *allocate_args("sec-2", "v1", "--dry-run")),
        "db reset-and-seed --dry-run": cli("plan", "db", "reset-and-seed", "--slot", slot,
                                           "--run-id", "sec-2", "--strategy", "seed",
                                           "--seed-version", "v1", "--dry-run"),
    }
    closed_port = str(free_port())
    failing = {
        "control plane refuses": variant(env, "cp-down", r'(^\[control_plane\]\nurl = "[^"]*?:)\d+/',
                                         rf"\g<1>{closed_port}/"),
        "control plane wrong password": variant(
            env, "cp-pw", r"^(\[control_plane\]\nurl = \"postgresql://postgres:)[^@]+@",
            rf"\g<1>{quote(WRONG_PASSWORD)}@"),
        "slot server refuses mid-reset": variant(
            env, "slots-down", r'(^\[database\]\nurl = "[^"]*?:)\d+/', rf"\g<1>{closed_port}/"),
    }
    failed = {what: cli(what, *allocate_args(f"sec-{i + 3}", "tiny"), config=config)
              for i, (what, config) in enumerate(failing.items())}
    texts = {f"{what} (exit {r.returncode})": r.stdout + r.stderr for what, r in runs}
    rows = {table: "\n".join(r[0] for r in env.cp(f"SELECT t::text FROM {table} t"))
            for table in TABLES}
    server_log = pg.logfile.read_bytes()[log_start:].decode(errors="replace")
    apps = "\n".join(r[0] or "" for r in env.query(
        "postgres", "SELECT application_name FROM pg_stat_activity"))
    secrets = {pg.password, quote(pg.password, safe=""), WRONG_PASSWORD}
    places = {**texts, **{f"row of {t}": text for t, text in rows.items()},
              "server log": server_log, "application names": apps}
    leaks = sorted(where for where, text in places.items() if any(s in text for s in secrets))
    test = "secrets: --debug, full cycle and failing connections"
    record(test, "cycle exit codes", list(codes.values()), "all 0",
           all(c == 0 for c in codes.values()))
    record(test, "failing connections: exit codes", list(failed.values()), "[1, 1, 1]",
           list(failed.values()) == [1, 1, 1])
    masked = sum("***" in text for text in texts.values())
    record(test, "outputs / rows / log checked", f"{len(texts)} / {len(rows)} tables / "
           f"{len(server_log.splitlines())} lines", "-")
    record(test, "outputs showing a masked URL", masked, "> 0", masked > 0)
    reason = env.cp("SELECT end_reason FROM leases WHERE run_id = 'sec-5'")[0][0] or ""
    record(test, "failed lease records the server, masked", "***@" in reason, "True",
           "***@" in reason)
    record(test, "places where a password appears", len(leaks), "0", not leaks)
    verdict(test, leaks, {w: t[-300:] for w, t in texts.items() if "exit 70" in w})
