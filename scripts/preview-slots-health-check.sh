#!/usr/bin/env bash
# Direct + routed health checks for every preview slot: a thin wrapper over `preview-slots health`.
#
#   ./scripts/preview-slots-health-check.sh [--slot S] [--json] [--timeout D] [--wait D]
#
# Exit 0 only when every selected slot is healthy, 1 otherwise (2 on bad usage or config).
# Works from any directory: prefers the project's own virtualenv, else `preview-slots` on PATH.
set -euo pipefail

here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
cli="$here/../.venv/bin/preview-slots"
if [[ ! -x "$cli" ]]; then
  if ! cli="$(command -v preview-slots)"; then
    echo "preview-slots-health-check.sh: preview-slots is not installed (run 'make install' in" \
      "$(dirname -- "$here") or install the package)" >&2
    exit 2
  fi
fi
exec "$cli" health "$@"
