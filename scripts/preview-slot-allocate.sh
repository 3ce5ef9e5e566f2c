#!/usr/bin/env bash
# Usage: ./scripts/preview-slot-allocate.sh --run-id <run_id> --strategy seed|snapshot (--seed-version V | --snapshot-version V) [--wait D] [--ttl D] [--json] [--dry-run]
# A thin wrapper over `preview-slots allocate`; exit codes are the CLI's (see README).
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/_resolve-cli.sh"
exec "$cli" allocate "$@"
