"""Verdict logic of each health check, from observations (no network)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from preview_slots.config import build_config
from preview_slots.health.model import CheckName, CheckStatus
from preview_slots.health.probe import ProbeFailure, Response, upstreams_for
from preview_slots.health.verdicts import (
    database_from_url,
    database_verdict,
    direct_verdict,
    provenance_verdict,
    routed_verdict,
    service_verdict,
)
from preview_slots.runtime.base import ServiceState

CONFIG = build_config({}, None)
SLOT = CONFIG.slot("preview2")


def resp(code: int = 200, body: Any = None, **headers: str) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None \
        else b""
    return Response(code=code, body=raw, headers=headers, latency=0.004)


def app(slot: str = "preview2", database: str = "app_preview_2", status: str = "ok",
        code: int = 200, **extra: str) -> Response:
    return resp(code, {"status": status, "slot": slot, "database": database, **extra})


REFUSED = ProbeFailure("refused", "connection refused", 0.001)
TIMEOUT = ProbeFailure("timeout", "timed out after 5s", 5.0)


def no_lookup() -> list[str] | None:
    raise AssertionError("Caddy's config must not be fetched for a passing check")


def owner_of(db: str) -> str | None:
    return getattr(CONFIG.slot_for_database(db), "id", None)


# -- direct ------------------------------------------------------------------------------------


def test_direct_ok() -> None:
    result = direct_verdict(SLOT, app(), "t")
    assert result.status is CheckStatus.OK and result.code == 200 and result.latency == 0.004


@pytest.mark.parametrize(("seen", "reason"), [
    (REFUSED, "connection refused"),
    (TIMEOUT, "timed out after 5s"),
    (app(status="error", code=503, error="db down"), "HTTP 503: db down"),
    (app(status="error", code=503), "HTTP 503: the app reports status 'error'"),
    (resp(500, b"oops"), "HTTP 500"),
    (app(status="degraded"), "the app reports status 'degraded'"),
    (app(slot="preview3"), "port 3102 answers as slot 'preview3', not 'preview2'"),
])
def test_direct_failures(seen: Response | ProbeFailure, reason: str) -> None:
    result = direct_verdict(SLOT, seen, "t")
    assert result.status is CheckStatus.FAIL
    assert result.reason.startswith(reason), result.reason


def test_direct_accepts_a_plain_text_200() -> None:
    assert direct_verdict(SLOT, resp(200, b"OK"), "t").status is CheckStatus.OK


# -- routed ------------------------------------------------------------------------------------


def test_routed_ok_does_not_ask_caddy() -> None:
    result = routed_verdict(SLOT, app(), "t", direct=app(), lookup=no_lookup)
    assert result.status is CheckStatus.OK and result.code == 200


def test_routed_proxy_refused() -> None:
    result = routed_verdict(SLOT, REFUSED, "t", direct=app(), lookup=no_lookup)
    assert result.reason == "proxy: connection refused (is Caddy running?)"


def test_routed_reaches_another_slot_says_where() -> None:
    result = routed_verdict(SLOT, app(slot="preview3", database="app_preview_3"), "t",
                            direct=app(), lookup=lambda: ["127.0.0.1:3103"])
    assert result.status is CheckStatus.FAIL and result.code == 200
    assert result.reason == (
        "wrong Host routing: preview2.example.com reached preview3 (database app_preview_3), "
        "expected preview2 on 127.0.0.1:3102; Caddy sends preview2.example.com to 127.0.0.1:3103"
    )
    assert result.data["reached_slot"] == "preview3"


def test_routed_reaches_another_database_without_slot_field() -> None:
    body = resp(200, {"status": "ok", "database": "app_preview_1"})
    result = routed_verdict(SLOT, body, "t", direct=app(), lookup=lambda: None)
    assert result.status is CheckStatus.FAIL
    assert "reached the service using app_preview_1" in result.reason


def test_routed_502_upstream_down() -> None:
    result = routed_verdict(SLOT, resp(502), "t", direct=REFUSED,
                            lookup=lambda: ["127.0.0.1:3102"])
    assert result.code == 502
    assert result.reason == ("502 from proxy (bad gateway): upstream 127.0.0.1:3102 is not "
                             "answering (connection refused)")


def test_routed_503_from_the_app_is_not_blamed_on_the_proxy() -> None:
    result = routed_verdict(SLOT, app(status="error", code=503), "t", direct=app(code=503),
                            lookup=no_lookup)
    assert result.reason == "HTTP 503 from the app through the proxy: the app reports status " \
        "'error'"


def test_routed_502_wrong_upstream() -> None:
    result = routed_verdict(SLOT, resp(502), "t", direct=app(),
                            lookup=lambda: ["127.0.0.1:9999"])
    assert "wrong upstream, Caddy sends preview2.example.com to 127.0.0.1:9999, expected " \
           "127.0.0.1:3102" in result.reason


def test_routed_empty_200_means_no_site() -> None:
    result = routed_verdict(SLOT, resp(200, b""), "t", direct=app(), lookup=lambda: [])
    assert result.status is CheckStatus.FAIL
    assert "Caddy has no route for preview2.example.com" in result.reason
    result = routed_verdict(SLOT, resp(200, b""), "t", direct=app(), lookup=lambda: None)
    assert "(no site for preview2.example.com?)" in result.reason


def test_routed_redirect_hints_at_tls_setting() -> None:
    result = routed_verdict(SLOT, resp(308, b"", location="https://preview2.example.com/health"),
                            "t", direct=app(), lookup=no_lookup)
    assert result.reason.startswith("HTTP 308 redirect to https://preview2.example.com/health")


def test_routed_plain_text_app_passes_when_direct_is_plain_too() -> None:
    result = routed_verdict(SLOT, resp(200, b"OK"), "t", direct=resp(200, b"OK"),
                            lookup=no_lookup)
    assert result.status is CheckStatus.OK


# -- service -----------------------------------------------------------------------------------


def test_service_states() -> None:
    up = ServiceState(unit="u", active=True, state="active", main_pid=42, restarts=1)
    ok = service_verdict("u", up, None, "systemd")
    assert ok.status is CheckStatus.OK and ok.detail == "active, pid 42, 1 restart"
    down = ServiceState(unit="u", active=False, state="failed", detail="exit-code")
    bad = service_verdict("u", down, None, "systemd")
    assert bad.status is CheckStatus.FAIL and bad.reason == "u is failed (exit-code)"
    err = service_verdict("u", None, "supervisord is not running", "supervisor")
    assert err.status is CheckStatus.FAIL and err.reason == "supervisord is not running"
    assert service_verdict("u", None, None, None).status is CheckStatus.SKIP


# -- database ----------------------------------------------------------------------------------


def test_database_ok_from_app_report() -> None:
    result = database_verdict(SLOT, app(), "t", environment=None, owner_of=owner_of)
    assert result.status is CheckStatus.OK and result.detail == "app_preview_2"


def test_database_c11_another_slots_database() -> None:
    result = database_verdict(SLOT, app(database="app_preview_1"), "t", environment=None,
                              owner_of=owner_of)
    assert result.status is CheckStatus.FAIL
    assert result.reason == ("wrong database: the app reports app_preview_1 (preview1's "
                             "database), expected app_preview_2")


def test_database_c11_environment_contradicts_a_silent_app() -> None:
    env = {"DATABASE_URL": "postgresql://app:pw@db.internal:5432/shared?sslmode=require"}
    result = database_verdict(SLOT, resp(200, b"OK"), "t", environment=env, owner_of=owner_of)
    assert result.reason == ("wrong database: the service's DATABASE_URL names shared, expected "
                             "app_preview_2")


def test_database_environment_alone_is_enough() -> None:
    env = {"DATABASE_URL": "postgresql://app@127.0.0.1/app_preview_2"}
    result = database_verdict(SLOT, REFUSED, "t", environment=env, owner_of=owner_of)
    assert result.status is CheckStatus.OK


def test_database_unreachable() -> None:
    result = database_verdict(SLOT, app(status="error", code=503, error="connection refused"),
                              "t", environment=None, owner_of=owner_of)
    assert result.reason == "app_preview_2 is not reachable by the app: connection refused"


def test_database_without_evidence_fails() -> None:
    result = database_verdict(SLOT, resp(200, b"OK"), "t", environment=None, owner_of=owner_of,
                              env_error="not running")
    assert result.status is CheckStatus.FAIL
    assert result.reason.startswith("cannot tell which database the service uses")
    assert "(not running)" in result.reason


@pytest.mark.parametrize(("text", "name"), [
    ("postgresql://u:p@h:5432/app_preview_1", "app_preview_1"),
    ("postgres:///app%5Fx", "app_x"),
    ("host=h dbname=app_preview_3 user=u", "app_preview_3"),
    ("postgresql://h:5432", None),
])
def test_database_from_url(text: str, name: str | None) -> None:
    assert database_from_url(text) == name


# -- provenance --------------------------------------------------------------------------------

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def row(status: str, **extra: Any) -> dict[str, Any]:
    return {"id": 7, "run_id": "pr-12", "slot_id": "preview2", "db_name": "app_preview_2",
            "strategy": "seed", "seed_version": "v1", "snapshot_version": None,
            "reset_status": status, "started_at": WHEN, "finished_at": WHEN, **extra}


def test_provenance_succeeded() -> None:
    result = provenance_verdict(SLOT, row("succeeded"), None, enabled=True)
    assert result.status is CheckStatus.OK
    assert result.detail == "seed v1 (run pr-12, 2026-01-02T03:04:05+00:00)"
    assert result.data["started_at"] == "2026-01-02T03:04:05+00:00"


@pytest.mark.parametrize(("status", "extra", "reason"), [
    ("running", {}, "a reset is in progress (seed v1, run pr-12, started 2026-01-02T03:04:05"),
    ("failed", {"details": {"error": "020_orders.sql:40: 23503"}},
     "the last reset failed (seed v1, run pr-12): 020_orders.sql:40: 23503"),
    ("abandoned", {}, "the last reset abandoned (seed v1, run pr-12)"),
    ("succeeded", {"db_name": "app_preview_1"}, "the last reset recorded for preview2 was into "
                                                 "app_preview_1"),
])
def test_provenance_failures(status: str, extra: dict[str, Any], reason: str) -> None:
    result = provenance_verdict(SLOT, row(status, **extra), None, enabled=True)
    assert result.status is CheckStatus.FAIL
    assert result.reason.startswith(reason), result.reason


def test_provenance_snapshot_names_its_version() -> None:
    r = row("succeeded", strategy="snapshot", seed_version=None, snapshot_version="2026-01")
    assert provenance_verdict(SLOT, r, None, enabled=True).detail.startswith("snapshot 2026-01")


def test_provenance_none_error_disabled() -> None:
    assert provenance_verdict(SLOT, None, None, enabled=True).status is CheckStatus.SKIP
    assert provenance_verdict(SLOT, None, None, enabled=False).status is CheckStatus.SKIP
    err = provenance_verdict(SLOT, None, "cannot connect to the control plane", enabled=True)
    assert err.status is CheckStatus.FAIL
    assert err.reason == "cannot read the last reset: cannot connect to the control plane"


# -- where Caddy sends a host -----------------------------------------------------------------

# `caddy adapt` of a Caddyfile with two sites (preview2's host pointing at preview3's port).
CADDY_JSON = json.loads("""
{"admin":{"listen":"127.0.0.1:2999"},"apps":{"http":{"http_port":8080,"servers":{"srv0":{
"listen":[":8080"],"routes":[{"match":[{"host":["preview1.example.com"]}],"handle":[{"handler":
"subroute","routes":[{"handle":[{"handler":"reverse_proxy","upstreams":[{"dial":"127.0.0.1:3101"}
]}]}]}],"terminal":true},{"match":[{"host":["preview2.example.com"]}],"handle":[{"handler":
"subroute","routes":[{"handle":[{"handler":"reverse_proxy","upstreams":[{"dial":"127.0.0.1:3103"}
]}]}]}],"terminal":true},{"match":[{"host":["*.wild.example.com"]}],"handle":[{"handler":
"reverse_proxy","upstreams":[{"dial":"127.0.0.1:4000"}]}]}],"automatic_https":{"disable":true}}}}}}
""")


def test_upstreams_for() -> None:
    assert upstreams_for(CADDY_JSON, "preview1.example.com") == ["127.0.0.1:3101"]
    assert upstreams_for(CADDY_JSON, "PREVIEW2.example.com") == ["127.0.0.1:3103"]
    assert upstreams_for(CADDY_JSON, "preview3.example.com") == []
    assert upstreams_for(CADDY_JSON, "a.wild.example.com") == ["127.0.0.1:4000"]
    assert upstreams_for(CADDY_JSON, "wild.example.com") == []
    assert upstreams_for(None, "preview1.example.com") is None


def test_every_check_has_a_verdict_function() -> None:
    assert [c.value for c in CheckName] == ["direct", "routed", "service", "database",
                                            "provenance"]


def test_slot_fixture_matches_the_seed() -> None:
    assert (SLOT.id, SLOT.host, SLOT.port, SLOT.database) == (
        "preview2", "preview2.example.com", 3102, "app_preview_2")
