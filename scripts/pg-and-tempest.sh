#!/usr/bin/env bash
# `make test`'s second half: the database tests on PostgreSQL (scripts/pg-test.sh) and OpenStack's
# tempest (scripts/tempest.sh) side by side. Each spends much of its time waiting (tempest polls
# statuses, the PostgreSQL run round-trips to the database and to `ferry serve`), so together
# they take little more than the longer of the two on 2 cores. The PostgreSQL run's output goes
# to build/pg-test.log and is printed when both are done; exits non-zero if either failed.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
bash scripts/pg-test.sh > build/pg-test.log 2>&1 &
pg=$!
bash scripts/tempest.sh
tempest=$?
wait "$pg"
postgres=$?
echo "== PostgreSQL run (build/pg-test.log), exit $postgres"
if [[ $postgres -eq 0 ]]; then tail -n 20 build/pg-test.log; else cat build/pg-test.log; fi
echo "== tempest exit $tempest"
[[ $tempest -eq 0 && $postgres -eq 0 ]]
