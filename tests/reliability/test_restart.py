"""The control plane's server restarted (immediate mode: a crash) in the middle of a storm: the
invariants hold and every client exits with a documented code and a one-line message."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable

from preview_slots.local.pg import LocalPostgres
from tests.conftest import Env
from tests.reliability.conftest import size
from tests.reliability.figures import record, verdict
from tests.reliability.harness import storm, summary
from tests.reliability.test_storm import HOLD_TTL, after_storm_checks, storm_env

# what an exit-1 message may say when the server went away under a client
KNOWN_FAILURES = {
    "control plane unreachable": ("cannot connect to the control plane", "lost the control plane"),
    "slot server unreachable": ("slot database server",),
    "lease lost": ("lease lost",),
    "reset failed": ("failed",),
}


def kind(stderr: str) -> str:
    line = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    for name, needles in KNOWN_FAILURES.items():
        if line.startswith("preview-slots: error: ") and any(n in line for n in needles):
            return name
    return "unknown"


def test_control_plane_restarted_mid_storm(make_env: Callable[..., Env],
                                           pg: LocalPostgres) -> None:
    n = size(24, 60)
    env = storm_env(make_env)
    took: list[float] = []

    def crash_and_restart() -> None:
        started = time.monotonic()
        pg.restart("immediate")
        took.append(time.monotonic() - started)

    result = storm(env, n, wait="900s", ttl=HOLD_TTL, kill_fraction=0.0, rng=random.Random(8),
                   midway=crash_and_restart, midway_after=n // 4, prefix="r")
    codes = result.codes
    failed = [c for c in result.clients if c.code == 1]
    kinds = Counter(kind(c.stderr) for c in failed)
    tracebacks = [c for c in result.clients if "Traceback" in c.stderr]
    unexpected = result.unexpected({0, 1, 3})
    persistence = env.cp("SELECT relname, relpersistence FROM pg_class WHERE relname IN "
                         "('slots', 'leases', 'lease_events', 'preview_db_resets', 'waiters')")
    test = f"control plane restarted (immediate) mid-storm, {n} clients"
    record(test, "restart took", f"{took[0]:.1f}s" if took else "never", "happened", bool(took))
    record(test, "exit codes", dict(sorted(codes.items())), "only 0, 1, 3", not unexpected)
    record(test, "exit 1 by cause", dict(kinds) or "-", "no unknown, no traceback",
           "unknown" not in kinds and not tracebacks)
    record(test, "time to be served", summary(result.wait_times()))
    record(test, "lease tables logged (survive a crash)",
           "".join(sorted(p for _, p in persistence)), "ppppp",
           [p for _, p in persistence] == ["p"] * 5)
    problems = after_storm_checks(env, result, test, may_hold={c.run_id for c in failed})
    verdict(test, problems, [(c.run_id, c.code, c.stderr[-600:]) for c in
                             (unexpected + tracebacks + [c for c in failed
                                                         if kind(c.stderr) == "unknown"])[:4]])
