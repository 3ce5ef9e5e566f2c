"""A stand-in for one slot's web service: ``GET /health`` answers like the example app.

Run as ``python slot_app.py --port P --slot S [--delay S] [--latency S] [--status CODE]``. The database
it reports comes from ``DATABASE_URL`` in its environment, as the real app's does, so a service
started with another slot's URL reports another slot's database (case C-11).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slot", required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="sleep before listening")
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.0, help="sleep before each answer")
    args = parser.parse_args()
    database = urlsplit(os.environ.get("DATABASE_URL", "")).path.lstrip("/") or None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/health":
                self.send_error(404)
                return
            time.sleep(args.latency)
            ok = args.status == 200
            body = json.dumps({"status": "ok" if ok else "error", "slot": args.slot,
                               "database": database}).encode()
            self.send_response(args.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *items: object) -> None:
            pass

    time.sleep(args.delay)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
