"""Driving many real ``preview-slots`` processes at once: spawn, kill, hold, release, observe.

Each client is ``python -m preview_slots allocate ...`` exactly as CI calls it, writing to its own
files (no pipes to drain). The harness plays the CI job around it: when a client is served it checks
what it was handed (the slot database carries the lease's generation and the full seed), holds the
slot a short random time, then releases it, like a test job would.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from preview_slots.config import load_config
from preview_slots.errors import DatabaseUnavailable
from preview_slots.service import release
from tests.conftest import EXAMPLE_SEEDS, Env

TINY_ROWS = 20
TINY_SEED = ("CREATE TABLE items (id integer PRIMARY KEY, note text NOT NULL);\n"
             f"INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, {TINY_ROWS}) g;\n")


def add_seeds(env: Env, *, pause: float = 1.0) -> None:
    """``tiny``: one small table (fast resets for storms). ``slow``: the example seed v1 behind a
    pause, so that a failpoint armed mid-seed surely fires while psql is loading."""
    tiny = env.config.seeds_dir / "tiny"
    tiny.mkdir(exist_ok=True)
    (tiny / "001_items.sql").write_text(TINY_SEED)
    slow = env.config.seeds_dir / "slow"
    slow.mkdir(exist_ok=True)
    (slow / "000_pause.sql").write_text(f"SELECT pg_sleep({pause});\n")
    for path in sorted((EXAMPLE_SEEDS / "v1").glob("*.sql")):
        (slow / path.name).write_text(path.read_text())


def without_template_cache(env: Env) -> Env:
    """Reset by seeding each slot's build database directly (``[cache] templates = false``): the
    path where the seeding transaction itself re-checks the generation marker."""
    text = env.path.read_text()
    head = f'[cache]\nprefix = "c{env.tag}_"\n'
    assert head in text
    env.path.write_text(text.replace(head, head + "templates = false\n"))
    env.config = load_config(env.path)
    assert not env.config.cache.templates
    return env


def allocate_args(run_id: str, seed: str = "tiny", *extra: str) -> list[str]:
    return ["allocate", "--run-id", run_id, "--strategy", "seed", "--seed-version", seed,
            "--json", *extra]


@dataclass
class Client:
    run_id: str
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    started: float
    kill_at: float | None = None
    killed: bool = False
    code: int | None = None
    ended: float | None = None
    data: dict[str, Any] | None = None

    @property
    def stdout(self) -> str:
        return self.out.read_text()

    @property
    def stderr(self) -> str:
        return self.err.read_text()


def spawn(env: Env, args: list[str], *, name: str, failpoint: str | None = None,
          extra_env: dict[str, str] | None = None) -> Client:
    """Start one CLI process with its output in files under the test's folder."""
    full_env = {**os.environ, "PREVIEW_SLOTS_CONFIG": str(env.path), **(extra_env or {})}
    full_env.pop("PREVIEW_SLOTS_FAILPOINT", None)
    if failpoint:
        full_env["PREVIEW_SLOTS_FAILPOINT"] = failpoint
    logs = env.tmp / "clients"
    logs.mkdir(exist_ok=True)
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "preview_slots", *args], env=full_env,
                                stdout=o, stderr=e)
    return Client(args[args.index("--run-id") + 1] if "--run-id" in args else name, proc, out,
                  err, time.monotonic())


def finish(client: Client, timeout: float = 120) -> Client:
    client.code = client.proc.wait(timeout)
    client.ended = time.monotonic()
    return client


def is_stopped(pid: int) -> bool:
    """True when the process is stopped (SIGSTOP): state T in /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               step: float = 0.02) -> float:
    """Poll ``predicate`` until true; returns the seconds it took. Fails the test on timeout."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)
    return time.monotonic() - started


def release_with_retry(env: Env, run_id: str, *, patience: float = 60) -> bool:
    """Release as a CI job's last step would; retry while the control plane is restarting."""
    deadline = time.monotonic() + patience
    while True:
        try:
            release(env.config, run_id)
            return True
        except DatabaseUnavailable:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)


@dataclass
class StormResult:
    clients: list[Client]
    seconds: float
    bad_handouts: list[str] = field(default_factory=list)
    unchecked: int = 0  # handouts that could not be inspected in time (see check_handout)
    releases_failed: int = 0

    @property
    def codes(self) -> Counter[int]:
        return Counter(c.code for c in self.clients if c.code is not None)

    @property
    def served(self) -> list[Client]:
        return [c for c in self.clients if c.code == 0]

    @property
    def killed(self) -> list[Client]:
        return [c for c in self.clients if c.killed and c.code == -signal.SIGKILL]

    def unexpected(self, allowed: set[int]) -> list[Client]:
        return [c for c in self.clients if not (c.killed and c.code == -signal.SIGKILL)
                and c.code not in allowed]

    def wait_times(self) -> list[float]:
        return sorted(c.ended - c.started for c in self.served if c.ended is not None)


def check_handout(env: Env, data: dict[str, Any]) -> str | None:
    """What a served client got must be complete and of its own generation. (On a badly
    overloaded host the harness may look only after the hold ran out and the slot moved on: that
    is reported as late, not as a bad handout.)"""
    comment = env.query("postgres", "SELECT shobj_description(oid, 'pg_database') FROM "
                        "pg_database WHERE datname = %s", (data["db_name"],))
    expected = f"preview-slots slot={data['slot_id']} generation={data['generation']}"
    rows = env.query(data["db_name"], "SELECT count(*) FROM items")[0][0]
    still = env.cp("SELECT count(*) FROM leases WHERE run_id = %s AND generation = %s "
                   "AND state = 'ready'", (data["run_id"], data["generation"]))[0][0]
    if not still:
        return LATE
    if not comment or comment[0][0] != expected:
        return f"{data['run_id']}: {data['db_name']} is marked {comment!r}, expected {expected!r}"
    if rows != TINY_ROWS or data["reset_status"] != "succeeded":
        return f"{data['run_id']}: {rows} rows, reset {data['reset_status']}"
    return None


LATE = "late"


def storm(env: Env, n: int, *, wait: str, ttl: str, kill_fraction: float,
          hold: tuple[float, float] = (0.2, 1.0), midway: Callable[[], None] | None = None,
          midway_after: int = 0, rng: random.Random | None = None,
          prefix: str = "s") -> StormResult:
    """``n`` concurrent allocate processes on the env's slots. A random ``kill_fraction`` of them
    gets SIGKILL: half at a random moment of the storm (most are then waiting in line), half a
    random 0-0.5 s after they are seen resetting a slot (the harness watches ``leases.owner``).
    Served clients are checked, held ``hold`` seconds and released. ``midway`` runs once
    ``midway_after`` clients have been served (e.g. to restart the control plane)."""
    rng = rng or random.Random(n)
    started = time.monotonic()
    victims = rng.sample(range(n), round(n * kill_fraction))
    at_random, mid_reset = set(victims[::2]), set(victims[1::2])
    clients: list[Client] = []
    by_pid: dict[int, Client] = {}
    for i in range(n):
        client = spawn(env, allocate_args(f"{prefix}{i}", "tiny", "--wait", wait, "--ttl", ttl),
                       name=f"{prefix}{i}")
        if i in at_random:
            client.kill_at = started + rng.uniform(1.0, 1.0 + 0.4 * n)
        if i in mid_reset:
            by_pid[client.proc.pid] = client
        clients.append(client)
    result = StormResult(clients, 0.0)
    lock = threading.Lock()

    def hold_and_release(client: Client) -> None:
        time.sleep(rng.uniform(*hold))
        if not release_with_retry(env, client.run_id):
            with lock:
                result.releases_failed += 1

    pending: list[Future[None]] = []
    fired = midway is None
    with ThreadPoolExecutor(max_workers=16) as pool:
        running = list(clients)
        next_look = 0.0
        while running:
            now = time.monotonic()
            if by_pid and now >= next_look:
                next_look = now + 0.1
                for pid in resetting_pids(env):
                    victim = by_pid.pop(pid, None)
                    if victim is not None:
                        victim.kill_at = now + rng.uniform(0.0, 0.5)
            for client in list(running):
                due = client.kill_at is not None and now >= client.kill_at
                if due and not client.killed and client.proc.poll() is None:
                    client.proc.send_signal(signal.SIGKILL)
                    client.killed = True
                code = client.proc.poll()
                if code is None:
                    continue
                client.code, client.ended = code, time.monotonic()
                running.remove(client)
                if code == 0:
                    client.data = json.loads(client.stdout)
                    try:
                        problem = check_handout(env, client.data)
                    except psycopg.OperationalError:
                        problem = LATE  # the server was restarting
                    if problem == LATE:
                        result.unchecked += 1
                    elif problem:
                        result.bad_handouts.append(problem)
                    pending.append(pool.submit(hold_and_release, client))
            if not fired and len([c for c in clients if c.code == 0]) >= midway_after:
                fired = True
                assert midway is not None
                midway()
            time.sleep(0.02)
        for future in pending:
            future.result()
    result.seconds = time.monotonic() - started
    return result


def resetting_pids(env: Env) -> list[int]:
    """Process ids of the clients holding a resetting lease now (``owner`` is host:pid)."""
    try:
        rows = env.cp("SELECT owner FROM leases WHERE state = 'resetting'")
    except psycopg.OperationalError:
        return []
    return [int(owner.rsplit(":", 1)[1]) for (owner,) in rows]


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p50 = ordered[len(ordered) // 2]
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"p50 {p50:.1f}s, p95 {p95:.1f}s, max {ordered[-1]:.1f}s"
