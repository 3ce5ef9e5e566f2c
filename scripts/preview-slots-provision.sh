#!/usr/bin/env bash
# Install/update the slots' env files, units (or supervisord programs) and the Caddyfile, and
# start or restart exactly the services that changed. Usage: preview-slots-provision.sh [--dry-run]
# A thin wrapper over `preview-slots provision`; it works from any folder.
set -euo pipefail
here="$(dirname "$(readlink -f "$0")")"
if [[ -x "$here/../.venv/bin/preview-slots" ]]; then
  exec "$here/../.venv/bin/preview-slots" provision "$@"
fi
exec preview-slots provision "$@"
