#!/usr/bin/env bash
# Run the database-facing tests (everything but the QEMU guests) against a real PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
url=${FERRY_TEST_DATABASE_URL:-}
if [ -z "$url" ]; then
  ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
  pg_ctlcluster "$ver" main status >/dev/null 2>&1 || pg_ctlcluster "$ver" main start
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='ferry'\"" | grep -q 1 ||
    su postgres -c "psql -qc \"CREATE ROLE ferry LOGIN PASSWORD 'ferry' SUPERUSER\""
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='ferry_test'\"" | grep -q 1 ||
    su postgres -c "createdb -O ferry ferry_test"
  url=postgresql+psycopg2://ferry:ferry@127.0.0.1/ferry_test
fi
FERRY_TEST_DATABASE_URL=$url .venv/bin/pytest -q -m "db" tests
