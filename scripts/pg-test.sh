#!/usr/bin/env bash
# Run the database-facing tests (the many-hosts guests included) against a real PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
url=${FERRY_TEST_DATABASE_URL:-$(bash scripts/pg-start.sh ferry_test)}
FERRY_TEST_DATABASE_URL=$url .venv/bin/pytest -q -m "db" tests
