#!/usr/bin/env bash
# Ferry across two hypervisor hosts on this machine (scripts/demo_multihost.py), over Debian's
# PostgreSQL in database ferry_demo. Installs what it needs first, as `make demo` does.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s venv guest
url=$(bash scripts/pg-start.sh ferry_demo)
.venv/bin/python scripts/demo_multihost.py --database-url "$url" --guest-dir build/guest
