"""A server that goes away under an open session is 'unavailable' (exit 1), never a traceback.

Both connections the library keeps (the control plane's and the slot server's admin session)
are ended from outside with ``pg_terminate_backend``, as a restart or a failover would.
"""

from __future__ import annotations

import pytest

from preview_slots.controlplane import ControlPlane
from preview_slots.errors import EXIT_CODES, DatabaseUnavailable
from preview_slots.pgadmin import SlotServer
from tests.conftest import Env


def terminate(env: Env, application_name: str) -> int:
    rows = env.query("postgres", "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                     "WHERE application_name = %s", (application_name,))
    return int(rows[0][0])


def test_control_plane_session_ended(env: Env) -> None:
    with ControlPlane(env.config) as cp:
        assert cp.schema_version() > 0
        assert terminate(env, "preview-slots control") == 1
        with pytest.raises(DatabaseUnavailable, match="lost the control plane") as info:
            cp.schema_version()
    assert info.value.exit_code == 1 and "failed" in EXIT_CODES[1]


def test_slot_server_session_ended(env: Env) -> None:
    with SlotServer(env.config, application_name="preview-slots lost-test") as server:
        assert server.exists(env.config.control_plane.dbname)  # the session works
        assert terminate(env, "preview-slots lost-test") == 1
        with pytest.raises(DatabaseUnavailable, match="lost the slot database server"):
            server.exists(env.config.control_plane.dbname)
