"""Health of the slots: is each one serving, as itself, from its own database, through Caddy?

Per slot, five checks (all slots and all probes run concurrently):

``direct``      ``GET http://127.0.0.1:<port><health.path>`` answers 200 as this slot
``routed``      the same path through Caddy (``caddy.proxy_address``), ``Host: <slot host>`` and,
                with TLS, SNI ``<slot host>``; never public DNS. Must reach this slot, not another
``service``     the service manager (systemd / supervisord) says the slot's service is running
``database``    the app reports (``"database"`` in its health JSON), or the service's environment
                shows, the slot's own database (case C-11)
``provenance``  the slot's last reset in ``preview_db_resets`` succeeded, into its database

A slot is healthy when no check fails (a skipped check does not count).
:func:`wait_until_routed_healthy` is the readiness gate ``allocate`` uses before it hands out a
URL; it raises :class:`HealthTimeout` (an ``Unhealthy``) naming the failing checks.
"""

from preview_slots.health.engine import (
    LastReset,
    check_slots,
    check_until,
    direct_target,
    routed_target,
    wait_until_routed_healthy,
)
from preview_slots.health.model import (
    ALL_CHECKS,
    READINESS_CHECKS,
    CheckName,
    CheckResult,
    CheckStatus,
    HealthReport,
    HealthTimeout,
    SlotHealth,
)
from preview_slots.health.render import as_json, summary_line, table

__all__ = [
    "ALL_CHECKS",
    "READINESS_CHECKS",
    "CheckName",
    "CheckResult",
    "CheckStatus",
    "HealthReport",
    "HealthTimeout",
    "LastReset",
    "SlotHealth",
    "as_json",
    "check_slots",
    "check_until",
    "direct_target",
    "routed_target",
    "summary_line",
    "table",
    "wait_until_routed_healthy",
]
