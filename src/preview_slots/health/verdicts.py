"""Pure verdict logic: turn what a probe saw into a :class:`CheckResult`. No I/O here.

Each function takes the slot, the observation (an HTTP response or failure, a service state, a
reset row) and returns the check's status with a short reason that says what is wrong and, where
it can, where to look.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from preview_slots.config import Slot
from preview_slots.health.model import CheckName, CheckResult, CheckStatus
from preview_slots.health.probe import ProbeFailure, Response
from preview_slots.runtime.base import ServiceState

Observation = Response | ProbeFailure
# Where Caddy sends a host, asked lazily (only when the routed check fails).
UpstreamLookup = Callable[[], "list[str] | None"]

PROXY_ERRORS = {502: "bad gateway", 503: "service unavailable", 504: "gateway timeout"}
DATABASE_ENV_KEYS = ("DATABASE_URL", "PGDATABASE")


def _app_status(payload: Mapping[str, Any] | None) -> str | None:
    value = payload.get("status") if payload else None
    return value if isinstance(value, str) else None


def _app_error(payload: Mapping[str, Any] | None) -> str:
    if not payload:
        return ""
    for key in ("error", "reason", "message", "detail"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value[:200]
    return ""


def _app_said(payload: Mapping[str, Any] | None) -> str:
    """What the app's error response says: its error text, else its status word."""
    error = _app_error(payload)
    if error:
        return error
    status = _app_status(payload)
    return f"the app reports status {status!r}" if status else ""


def _reported(payload: Mapping[str, Any] | None, key: str) -> str | None:
    value = payload.get(key) if payload else None
    return value if isinstance(value, str) and value else None


def direct_verdict(slot: Slot, seen: Observation, target: str) -> CheckResult:
    """``GET http://127.0.0.1:<port><path>``: the slot's own service answers, as itself, 200."""
    if isinstance(seen, ProbeFailure):
        return CheckResult(CheckName.DIRECT, CheckStatus.FAIL, latency=seen.latency,
                           reason=seen.reason, target=target)
    payload = seen.json()
    other = _reported(payload, "slot")
    common: dict[str, Any] = {"code": seen.code, "latency": seen.latency, "target": target}
    if other and other != slot.id:
        return CheckResult(
            CheckName.DIRECT, CheckStatus.FAIL, **common,
            reason=f"port {slot.port} answers as slot {other!r}, not {slot.id!r} "
            "(another slot's service is on this port)",
        )
    if seen.code != 200:
        said = _app_said(payload)
        return CheckResult(CheckName.DIRECT, CheckStatus.FAIL, **common,
                           reason=f"HTTP {seen.code}" + (f": {said}" if said else ""))
    status = _app_status(payload)
    if status is not None and status.lower() not in ("ok", "pass", "healthy", "up"):
        return CheckResult(CheckName.DIRECT, CheckStatus.FAIL, **common,
                           reason=f"the app reports status {status!r}"
                           + (f": {_app_error(payload)}" if _app_error(payload) else ""))
    return CheckResult(CheckName.DIRECT, CheckStatus.OK, **common, detail="200")


def _where(upstreams: list[str] | None, slot: Slot) -> str:
    if upstreams is None:
        return ""
    if not upstreams:
        return f"Caddy has no route for {slot.host}"
    return f"Caddy sends {slot.host} to {', '.join(upstreams)}"


def _expected_upstream(slot: Slot, upstreams: list[str] | None) -> bool | None:
    if not upstreams:
        return None
    wanted = {f"127.0.0.1:{slot.port}", f"localhost:{slot.port}", f"[::1]:{slot.port}"}
    return any(u in wanted for u in upstreams)


def routed_verdict(
    slot: Slot,
    seen: Observation,
    target: str,
    *,
    direct: Observation | None,
    lookup: UpstreamLookup,
) -> CheckResult:
    """The same path through Caddy with the slot's Host header: it must reach *this* slot."""
    name = CheckName.ROUTED
    if isinstance(seen, ProbeFailure):
        hint = " (is Caddy running?)" if seen.kind == "refused" else ""
        return CheckResult(name, CheckStatus.FAIL, latency=seen.latency, target=target,
                           reason=f"proxy: {seen.reason}{hint}")
    common: dict[str, Any] = {"code": seen.code, "latency": seen.latency, "target": target}
    payload = seen.json()
    got_slot = _reported(payload, "slot")
    got_db = _reported(payload, "database")
    if (got_slot and got_slot != slot.id) or (got_db and got_db != slot.database and not got_slot):
        upstreams = lookup()
        went = got_slot or f"the service using {got_db}"
        extra = f" (database {got_db})" if got_slot and got_db else ""
        where = _where(upstreams, slot)
        return CheckResult(
            name, CheckStatus.FAIL, **common,
            reason=f"wrong Host routing: {slot.host} reached {went}{extra}, expected {slot.id} "
            f"on 127.0.0.1:{slot.port}" + (f"; {where}" if where else ""),
            data={"reached_slot": got_slot, "reached_database": got_db,
                  "upstreams": upstreams},
        )
    if seen.code in PROXY_ERRORS and payload is None:  # Caddy's own error, not the app's
        upstreams = lookup()
        where = _where(upstreams, slot)
        wrong = _expected_upstream(slot, upstreams) is False
        reason = f"{seen.code} from proxy ({PROXY_ERRORS[seen.code]})"
        if wrong:
            reason += f": wrong upstream, {where}, expected 127.0.0.1:{slot.port}"
        elif isinstance(direct, ProbeFailure):
            reason += f": upstream 127.0.0.1:{slot.port} is not answering ({direct.reason})"
        elif where:
            reason += f"; {where}"
        return CheckResult(name, CheckStatus.FAIL, **common, reason=reason,
                           data={"upstreams": upstreams} if upstreams is not None else {})
    if 300 <= seen.code < 400:
        location = seen.headers.get("location", "")
        return CheckResult(name, CheckStatus.FAIL, **common,
                           reason=f"HTTP {seen.code} redirect to {location or '?'} "
                           "(caddy.tls does not match how Caddy serves the site?)")
    if seen.code != 200:
        said = _app_said(payload)
        return CheckResult(name, CheckStatus.FAIL, **common,
                           reason=f"HTTP {seen.code} from the app through the proxy"
                           + (f": {said}" if said else ""))
    direct_json = direct.json() if isinstance(direct, Response) else None
    if payload is None and (direct_json is not None or not seen.body):
        upstreams = lookup()
        where = _where(upstreams, slot)
        return CheckResult(
            name, CheckStatus.FAIL, **common,
            reason="the proxy answered 200 without the app's health response"
            + (f"; {where}" if where else f" (no site for {slot.host}?)"),
            data={"upstreams": upstreams} if upstreams is not None else {},
        )
    status = _app_status(payload)
    if status is not None and status.lower() not in ("ok", "pass", "healthy", "up"):
        return CheckResult(name, CheckStatus.FAIL, **common,
                           reason=f"the app reports status {status!r} through the proxy")
    return CheckResult(name, CheckStatus.OK, **common, detail="200")


def service_verdict(unit: str, state: ServiceState | None, error: str | None,
                    manager: str | None, latency: float | None = None) -> CheckResult:
    name = CheckName.SERVICE
    if manager is None:
        return CheckResult(name, CheckStatus.SKIP, target=unit,
                           reason="no service manager (runtime.manager = \"none\")")
    target = f"{manager}: {unit}"
    if error is not None or state is None:
        return CheckResult(name, CheckStatus.FAIL, latency=latency, target=target,
                           reason=error or "the service manager said nothing")
    parts = [state.state]
    if state.main_pid:
        parts.append(f"pid {state.main_pid}")
    if state.restarts is not None:
        parts.append(f"{state.restarts} restart{'s' if state.restarts != 1 else ''}")
    detail = ", ".join(parts)
    data = {"state": state.state, "main_pid": state.main_pid, "restarts": state.restarts}
    if not state.active:
        return CheckResult(name, CheckStatus.FAIL, latency=latency, target=target, data=data,
                           reason=f"{unit} is {state.state}"
                           + (f" ({state.detail})" if state.detail else ""))
    return CheckResult(name, CheckStatus.OK, latency=latency, target=target, detail=detail,
                       data=data)


def database_from_url(url: str) -> str | None:
    """The database name in a ``postgresql://`` URL or a libpq ``dbname=`` string."""
    url = url.strip()
    if "://" in url:
        path = unquote(urlsplit(url).path.lstrip("/"))
        return path or None
    for item in url.split():
        key, _, value = item.partition("=")
        if key == "dbname" and value:
            return value.strip("'")
    return None


def database_verdict(
    slot: Slot,
    report: Observation | None,
    target: str,
    *,
    environment: Mapping[str, str] | None,
    owner_of: Callable[[str], str | None],
    env_error: str | None = None,
) -> CheckResult:
    """Which database does the slot's service use? Evidence: the app's health response
    (``"database"``) and the service's environment (``DATABASE_URL``). Any evidence of another
    database fails (case C-11); no evidence at all fails too, since it cannot be proven."""
    name = CheckName.DATABASE
    evidence: list[tuple[str, str]] = []
    code = latency = None
    unreachable = ""
    if isinstance(report, Response):
        code, latency = report.code, report.latency
        payload = report.json()
        reported = _reported(payload, "database")
        if reported:
            evidence.append(("the app reports", reported))
        if report.code != 200 and reported:
            unreachable = _app_error(payload) or f"HTTP {report.code}"
    if environment is not None:
        for key in DATABASE_ENV_KEYS:
            if key in environment:
                db = database_from_url(environment[key]) if key == "DATABASE_URL" \
                    else environment[key]
                if db:
                    evidence.append((f"the service's {key} names", db))
                    break
    common: dict[str, Any] = {"code": code, "latency": latency, "target": target}
    for source, db in evidence:
        if db != slot.database:
            owner = owner_of(db)
            whose = f" ({owner}'s database)" if owner else ""
            return CheckResult(
                name, CheckStatus.FAIL, **common,
                reason=f"wrong database: {source} {db}{whose}, expected {slot.database}",
                data={"database": db, "expected": slot.database},
            )
    if evidence and unreachable:
        return CheckResult(name, CheckStatus.FAIL, **common,
                           reason=f"{slot.database} is not reachable by the app: {unreachable}",
                           data={"database": slot.database})
    if evidence:
        return CheckResult(name, CheckStatus.OK, **common, detail=slot.database,
                           data={"database": slot.database,
                                 "sources": [source for source, _ in evidence]})
    if isinstance(report, ProbeFailure) and environment is None:
        return CheckResult(name, CheckStatus.FAIL, **common,
                           reason=f"cannot tell which database the service uses: it does not "
                           f"answer ({report.reason})")
    if isinstance(report, ProbeFailure):
        why = f"the health endpoint did not answer ({report.reason})"
    elif isinstance(report, Response):
        why = "the health response has no \"database\" field"
    else:
        why = "no health response"
    if environment is None:
        why += " and the service manager cannot show the service's environment"
        if env_error:
            why += f" ({env_error})"
    else:
        why += " and the service's environment has no DATABASE_URL"
    return CheckResult(name, CheckStatus.FAIL, **common,
                       reason=f"cannot tell which database the service uses: {why}")


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value) if value else "?"


def provenance_verdict(
    slot: Slot,
    row: Mapping[str, Any] | None,
    error: str | None,
    *,
    enabled: bool,
    latency: float | None = None,
) -> CheckResult:
    """The slot's last reset (``preview_db_resets``): it must have succeeded, into this slot's
    database. No reset recorded yet is not a failure (a slot never allocated)."""
    name = CheckName.PROVENANCE
    target = "preview_db_resets"
    if not enabled:
        return CheckResult(name, CheckStatus.SKIP, target=target,
                           reason="no control plane to ask")
    if error is not None:
        return CheckResult(name, CheckStatus.FAIL, latency=latency, target=target,
                           reason=f"cannot read the last reset: {error}")
    if row is None:
        return CheckResult(name, CheckStatus.SKIP, latency=latency, target=target,
                           reason="no reset recorded for this slot yet")
    status = str(row.get("reset_status") or "?")
    strategy = row.get("strategy")
    version = row.get("seed_version") if strategy == "seed" else row.get("snapshot_version")
    what = f"{strategy} {version}" if strategy else "reset"
    run = row.get("run_id")
    data = {k: (_when(v) if isinstance(v, datetime) else v) for k, v in row.items()
            if k in ("id", "run_id", "db_name", "strategy", "seed_version", "snapshot_version",
                     "reset_status", "started_at", "finished_at")}
    common: dict[str, Any] = {"latency": latency, "target": target, "data": data}
    db = row.get("db_name")
    if db and db != slot.database:
        return CheckResult(name, CheckStatus.FAIL, **common,
                           reason=f"the last reset recorded for {slot.id} was into {db}, "
                           f"not {slot.database}")
    if status == "succeeded":
        return CheckResult(name, CheckStatus.OK, **common,
                           detail=f"{what} (run {run}, {_when(row.get('finished_at'))})")
    if status == "running":
        return CheckResult(name, CheckStatus.FAIL, **common,
                           reason=f"a reset is in progress ({what}, run {run}, started "
                           f"{_when(row.get('started_at'))})")
    details = row.get("details")
    error_text = details.get("error") if isinstance(details, Mapping) else None
    return CheckResult(name, CheckStatus.FAIL, **common,
                       reason=f"the last reset {status} ({what}, run {run})"
                       + (f": {str(error_text)[:200]}" if error_text else ""))


def skipped(name: CheckName, reason: str) -> CheckResult:
    return CheckResult(name, CheckStatus.SKIP, reason=reason)


def first_failure(results: Sequence[CheckResult]) -> CheckResult | None:
    return next((r for r in results if not r.ok), None)
