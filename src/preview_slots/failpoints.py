"""Failpoints for the reliability suite: stop, sleep or die at a named step.

Inert unless ``PREVIEW_SLOTS_FAILPOINT`` is set, e.g. ``after_claim:kill`` or
``mid_seed:sleep(5),before_ready:stop``. Actions: ``kill`` (SIGKILL ourselves), ``stop``
(SIGSTOP ourselves), ``sleep(N)``, ``error`` (raise). Steps: before_claim, in_claim (inside
the claim transaction, the slot's row locked), after_claim, after_create, mid_seed, before_swap,
after_swap, before_ready, after_ready (the lease is ready, the reply not printed yet).
This is the one place the library reads the environment, once, at first use.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from functools import cache

STEPS = ("before_claim", "in_claim", "after_claim", "after_create", "mid_seed", "before_swap",
         "after_swap", "before_ready", "after_ready")


@cache
def _plan() -> dict[str, str]:
    raw = os.environ.get("PREVIEW_SLOTS_FAILPOINT", "")
    plan: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in raw.split(","))):
        step, _, action = item.partition(":")
        plan[step] = action or "kill"
    return plan


def _act(step: str, action: str) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif action == "error":
        raise RuntimeError(f"failpoint {step}")
    elif m := re.fullmatch(r"sleep\((\d+(?:\.\d+)?)\)", action):
        time.sleep(float(m.group(1)))


def hit(step: str) -> None:
    """A plain check in the step runner; does nothing unless the failpoint is armed. A failpoint
    fires once per process (a step inside a retry loop stops or sleeps the first time only)."""
    action = _plan().pop(step, None)
    if action:
        _act(step, action)


def hit_later(step: str, delay: float = 0.3) -> None:
    """Arm ``step`` to fire from a timer while the current step (e.g. a seed) is running."""
    action = _plan().pop(step, None)
    if action:
        timer = threading.Timer(delay, _act, (step, action))
        timer.daemon = True
        timer.start()
