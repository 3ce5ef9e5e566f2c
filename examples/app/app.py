"""The example web application of a preview slot (the embedded demo runs one per slot).

Standard library plus psycopg. Configuration comes only from the environment, as
preview-slots' env file sets it:

    PORT, HOST          where to listen (HOST defaults to 127.0.0.1)
    DATABASE_URL        the slot's own database; required: without it the app refuses to start
                        (it never falls back to a default database, see case C-11)
    STATIC_ROOT         served at /
    PREVIEW_SLOT        the slot's name, reported by /health

``GET /health`` answers ``{"status": "ok", "slot": ..., "database": ...}`` with 200 when the
database answers (``database`` is its ``current_database()``), else 503 with ``"status": "error"``
and the database name taken from ``DATABASE_URL``. ``GET /data`` counts the rows of every table
in the slot's database, to show which data (which seed or snapshot) the slot serves.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

EX_CONFIG = 78


def database_name(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/"))


class Handler(SimpleHTTPRequestHandler):
    server_version = "preview-slots-example/1"
    database_url = ""
    slot = ""

    def do_GET(self) -> None:
        route = self.path.split("?", 1)[0]
        if route == "/health":
            self._health()
        elif route == "/data":
            self._data()
        else:
            super().do_GET()

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, connect_timeout=3,
                             application_name=f"example-app {self.slot}") as conn:
            return conn.execute(sql).fetchall()

    def _health(self) -> None:
        try:
            rows = self._query("select current_database()")
            body = {"status": "ok", "slot": self.slot, "database": str(rows[0][0])}
            code = 200
        except psycopg.Error as exc:
            sys.stderr.write(f"health: database unreachable: {type(exc).__name__}\n")
            body = {"status": "error", "slot": self.slot,
                    "database": database_name(self.database_url)}
            code = 503
        self._json(code, body)

    def _data(self) -> None:
        try:
            with psycopg.connect(self.database_url, connect_timeout=3) as conn:
                tables = [str(r[0]) for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
                counts = {}
                for table in tables:
                    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                        sql.Identifier(table))).fetchone()
                    counts[table] = int(row[0]) if row else 0
        except psycopg.Error as exc:
            self._json(503, {"slot": self.slot, "error": type(exc).__name__})
            return
        self._json(200, {"slot": self.slot, "database": database_name(self.database_url),
                         "tables": counts})

    def _json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> int:
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        sys.stderr.write("example app: DATABASE_URL is not set; refusing to start without the "
                         "slot's own database\n")
        return EX_CONFIG
    port = int(os.environ.get("PORT", "0") or 0)
    if not port:
        sys.stderr.write("example app: PORT is not set\n")
        return EX_CONFIG
    host = os.environ.get("HOST", "127.0.0.1")
    static_root = os.environ.get("STATIC_ROOT") or os.getcwd()
    Handler.database_url = url
    Handler.slot = os.environ.get("PREVIEW_SLOT", "")
    server = ThreadingHTTPServer((host, port), partial(Handler, directory=static_root))
    server.daemon_threads = True
    print(f"example app: slot {Handler.slot or '?'} on http://{host}:{port}/, "
          f"database {database_name(url)}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
