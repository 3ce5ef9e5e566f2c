#!/usr/bin/env bash
# Usage: ./scripts/preview-db-reset-and-seed.sh --slot preview1 --run-id <run_id> --strategy seed|snapshot (--seed-version V | --snapshot-version V) [--dry-run]
# A thin wrapper over `preview-slots db reset-and-seed`; exit codes are the CLI's (see README).
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/_resolve-cli.sh"
exec "$cli" db reset-and-seed "$@"
