"""A slot service for the runtime tests: records exactly what it was started with, then serves.

``python env_probe.py OUT_DIR [ARG...]`` writes ``OUT_DIR/<PREVIEW_SLOT>.json`` with its whole
environment and argv (atomically), then answers HTTP on ``$HOST:$PORT`` (``/health`` like the
example app, the database name taken from ``DATABASE_URL``) until it is stopped.
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


def main() -> None:
    out = Path(sys.argv[1])
    slot = os.environ.get("PREVIEW_SLOT", "unknown")
    record = {"env": dict(os.environ), "argv": sys.argv[1:], "pid": os.getpid()}
    temp = out / f".{slot}.json.tmp"
    temp.write_text(json.dumps(record))
    os.replace(temp, out / f"{slot}.json")
    database = urlsplit(os.environ.get("DATABASE_URL", "")).path.lstrip("/")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "ok", "slot": slot, "database": database}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *items: object) -> None:
            pass

    server = ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])),
                                 Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
