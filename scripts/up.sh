#!/usr/bin/env bash
# Set up (first run) and start the sandbox with the demo merchant on embedded SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/payscore up --with-demo-merchant 8090 "$@"
