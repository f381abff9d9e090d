#!/usr/bin/env bash
# Start Debian's PostgreSQL cluster if it is not running, make sure role `ferry` and database $1
# (default ferry_test) exist, and print the database URL. Used by pg-test.sh and the many-hosts demo.
set -euo pipefail
db=${1:-ferry_test}
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
pg_ctlcluster "$ver" main status >/dev/null 2>&1 || pg_ctlcluster "$ver" main start >&2
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='ferry'\"" | grep -q 1 ||
  su postgres -c "psql -qc \"CREATE ROLE ferry LOGIN PASSWORD 'ferry' SUPERUSER\"" >&2
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='$db'\"" | grep -q 1 ||
  su postgres -c "createdb -O ferry $db" >&2
echo "postgresql+psycopg2://ferry:ferry@127.0.0.1/$db"
