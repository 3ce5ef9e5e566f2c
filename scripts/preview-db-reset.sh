#!/usr/bin/env bash
# Usage: ./scripts/preview-db-reset.sh --slot preview1 [--run-id R] [--dry-run]
# A thin wrapper over `preview-slots db reset`; exit codes are the CLI's (see README).
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/_resolve-cli.sh"
exec "$cli" db reset "$@"
