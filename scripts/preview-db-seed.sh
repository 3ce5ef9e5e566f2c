#!/usr/bin/env bash
# Usage: ./scripts/preview-db-seed.sh --slot preview1 --seed-version v1 [--dry-run]
# A thin wrapper over `preview-slots db seed`; exit codes are the CLI's (see README).
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/_resolve-cli.sh"
exec "$cli" db seed "$@"
