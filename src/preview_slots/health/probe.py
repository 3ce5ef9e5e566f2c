"""HTTP probes on loopback: one GET, with the Host header (and TLS SNI) chosen by the caller.

Never resolves a public name: the connection goes to the address given, the host name only
travels in the ``Host`` header and the TLS handshake. Failures come back as a value
(:class:`ProbeFailure`) with a short, operator-readable reason, never as an exception.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

MAX_BODY = 64 * 1024
USER_AGENT = "preview-slots-health"


@dataclass(frozen=True)
class Response:
    code: int
    body: bytes
    headers: dict[str, str]
    latency: float

    def json(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None when it is not one."""
        try:
            value = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class ProbeFailure:
    kind: str  # refused | timeout | closed | tls | error
    reason: str
    latency: float


def _describe(exc: BaseException, timeout: float) -> tuple[str, str]:
    if isinstance(exc, ConnectionRefusedError):
        return "refused", "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout", f"timed out after {timeout:g}s"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls", f"TLS certificate rejected: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        hint = " (no certificate for this host name, or not yet)" \
            if exc.reason == "TLSV1_ALERT_INTERNAL_ERROR" else ""
        return "tls", f"TLS handshake failed: {exc.reason or exc}{hint}"
    if isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
        return "closed", "connection closed without a response"
    if isinstance(exc, http.client.HTTPException):
        return "error", f"not an HTTP response ({type(exc).__name__})"
    if isinstance(exc, OSError):
        return "error", exc.strerror or str(exc)
    raise exc  # pragma: no cover - only the families above are expected here


def http_get(
    address: str,
    port: int,
    path: str,
    *,
    timeout: float,
    host: str | None = None,
    tls: bool = False,
    verify: bool = True,
    cafile: str | None = None,
    sni: bool = True,
) -> Response | ProbeFailure:
    """``GET path`` from ``address:port``, sending ``Host: host`` (and SNI ``host`` with ``tls``).

    ``verify=False`` skips certificate checks (Caddy's internal CA is not in the system store);
    the SNI is sent either way so that Caddy picks the slot's site (``sni=False`` is for tests).
    """
    started = time.monotonic()
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
        if tls:
            ctx = ssl.create_default_context(cafile=cafile)
            if not verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            try:
                name = host if (sni and host) else None
                sock = ctx.wrap_socket(sock, server_hostname=name)
            except BaseException:
                sock.close()
                raise
        conn.sock = sock
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json", "Connection": "close"}
        if host:
            headers["Host"] = host if port in (80, 443) else f"{host}:{port}"
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read(MAX_BODY)
        return Response(
            code=resp.status,
            body=body,
            headers={k.lower(): v for k, v in resp.getheaders()},
            latency=time.monotonic() - started,
        )
    except (OSError, http.client.HTTPException) as exc:
        kind, reason = _describe(exc, timeout)
        return ProbeFailure(kind, reason, time.monotonic() - started)
    finally:
        conn.close()


def fetch_caddy_config(admin: str, *, timeout: float) -> dict[str, Any] | None:
    """Caddy's live JSON config from its admin endpoint, or None when it cannot be asked (admin
    off or on a unix socket, not answering, not JSON)."""
    if not admin or admin == "off" or admin.startswith("unix/"):
        return None
    address, _, port_text = admin.rpartition(":")
    address = address.strip("[]") or "127.0.0.1"
    if address == "localhost":
        address = "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        return None
    resp = http_get(address, port, "/config/", timeout=timeout)
    if isinstance(resp, ProbeFailure) or resp.code != 200:
        return None
    return resp.json()


def upstreams_for(config: dict[str, Any] | None, host: str) -> list[str] | None:
    """Where a Caddy JSON config sends ``host``: the ``dial`` addresses under its matching
    routes. An empty list means Caddy has no route for the host; None means no config."""
    if config is None:
        return None
    servers = ((config.get("apps") or {}).get("http") or {}).get("servers") or {}
    dials: list[str] = []
    for server in servers.values():
        for route in (server or {}).get("routes") or []:
            if _route_matches(route, host):
                _collect_dials(route.get("handle") or [], dials)
    return list(dict.fromkeys(dials))


def _route_matches(route: dict[str, Any], host: str) -> bool:
    matchers = route.get("match") or []
    for matcher in matchers:
        hosts = matcher.get("host") if isinstance(matcher, dict) else None
        if hosts and any(_host_matches(pattern, host) for pattern in hosts):
            return True
    return False


def _host_matches(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower(), host.lower()
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == host


def _collect_dials(node: Any, out: list[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "dial" and isinstance(value, str):
                out.append(value)
            else:
                _collect_dials(value, out)
    elif isinstance(node, list):
        for item in node:
            _collect_dials(item, out)
