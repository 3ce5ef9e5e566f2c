"""One exception tree for the whole library.

::

    PreviewSlotsError                      exit 1 unless a subclass says otherwise
    ├── UsageError                         exit 2  bad flags or values (run id, duration...)
    │   ├── ConfigError                    exit 2  the configuration file is wrong
    │   └── SourceError                    exit 2  seed folder / snapshot archive missing or unusable
    ├── NoSlotFree                         exit 3  no slot became free within --wait
    ├── SafetyRefusal                      exit 4  refused to protect something
    │   ├── NotAllowedDatabase             exit 4  a database outside the slot table
    │   ├── SlotLeasedToOther              exit 4  the slot is held by another run
    │   └── SlotQuarantined                exit 4  the slot failed too often and is set aside
    ├── OperationFailed                    exit 1  the operation was tried and failed
    │   ├── ResetFailed                    exit 1  a reset, seed or restore failed
    │   ├── LeaseLost                      exit 1  our lease expired or was taken over mid-operation
    │   ├── CommandFailed                  exit 1  an external program exited non-zero
    │   ├── DatabaseUnavailable            exit 1  PostgreSQL (control plane or slot server) unreachable
    │   ├── RuntimeFailed                  exit 1  systemd / supervisord / Caddy refused
    │   ├── Unhealthy                      exit 1  a health check failed
    │   └── Interrupted                    exit 130 SIGINT/SIGTERM (a cancelled CI job)
    └── (anything else is a bug: the CLI prints a traceback and exits 70)

Every message is written as the fix: what happened, to what, and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence


class PreviewSlotsError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(PreviewSlotsError):
    exit_code = 2


class ConfigError(UsageError):
    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        where = ": ".join(part for part in (path, key) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.key = key


class SourceError(UsageError):
    """The requested seed version or snapshot cannot be used; nothing was touched."""


class NoSlotFree(PreviewSlotsError):
    exit_code = 3


class SafetyRefusal(PreviewSlotsError):
    exit_code = 4


class NotAllowedDatabase(SafetyRefusal):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"refusing to touch database {name!r}: {reason}")
        self.name = name


class SlotLeasedToOther(SafetyRefusal):
    pass


class SlotQuarantined(SafetyRefusal):
    pass


class OperationFailed(PreviewSlotsError):
    exit_code = 1


class ResetFailed(OperationFailed):
    def __init__(self, message: str, *, phase: str = "", sqlstate: str | None = None,
                 blames_source: bool = False) -> None:
        super().__init__(message)
        self.phase = phase
        self.sqlstate = sqlstate
        # True when the seed or snapshot itself is at fault (it failed while building the shared
        # template): that says nothing about the slot, so it does not count toward quarantine
        self.blames_source = blames_source


class LeaseLost(OperationFailed):
    pass


class DatabaseUnavailable(OperationFailed):
    pass


class RuntimeFailed(OperationFailed):
    pass


class Unhealthy(OperationFailed):
    pass


class Interrupted(OperationFailed):
    """SIGINT or SIGTERM arrived (a cancelled CI job): the current step is stopped, the attempt is
    recorded as failed and the lease given back, so the slot does not wait for its TTL."""

    exit_code = 130


class CommandFailed(OperationFailed):
    def __init__(
        self, message: str, *, argv: Sequence[str] = (), returncode: int | None = None,
        stderr_tail: str = "",
    ) -> None:
        super().__init__(message)
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = stderr_tail


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "the operation failed (a reset failed, a lease was lost, a check is unhealthy)",
    2: "bad usage, bad configuration, or a seed/snapshot that does not exist or cannot be used",
    3: "no slot became free within --wait",
    4: "refused for safety (a database outside the slot table, a slot held by another run, "
    "a quarantined slot)",
    70: "internal error (a bug): a traceback is printed",
    130: "interrupted (SIGINT/SIGTERM): the running reset was recorded as failed and its lease "
    "given back",
}
