#!/usr/bin/env bash
# Measure Ferry against OpenStack's own conformance suite (docs/conformance.md): install a pinned
# tempest into build/tempest-venv (once), start a throw-away `ferry serve` with the test guest,
# write tempest.conf and a pre-provisioned accounts file against it, run the volume API tests, and
# stop the server (and reap its guests). Exits non-zero on any failure unless TEMPEST_REPORT_ONLY=1.
#
#   TEMPEST_REGEX        tests to run (default: the volume API and Nova's volume tests,
#                        '^tempest\.api\.(volume|compute\.volumes)\.')
#   TEMPEST_CONCURRENCY  tempest workers (default 2; one account set is provisioned per worker)
#   TEMPEST_REPORT_ONLY  1: print the summary and exit 0 whatever the result
#   TEMPEST_NEUTRON      1 (default): claim Neutron, so that tempest runs the attach, snapshot and
#                        volume-action classes it skips without one; Ferry's servers need no
#                        network and the run asks for none (docs/conformance.md). 0: don't.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

TEMPEST_VERSION=47.0.0
venv=build/tempest-venv
out=build/tempest
ws=$out/workspace
regex=${TEMPEST_REGEX:-'^tempest\.api\.(volume|compute\.volumes)\.'}
workers=${TEMPEST_CONCURRENCY:-2}
stamp=$venv/.tempest-$TEMPEST_VERSION
neutron_flag=$([[ ${TEMPEST_NEUTRON:-1} == 1 ]] && echo --neutron || true)

if [[ ! -x .venv/bin/python ]]; then
    echo "tempest.sh: Ferry's venv is missing; run 'make venv' first" >&2
    exit 2
fi
if [[ ! -f $stamp ]]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "tempest==$TEMPEST_VERSION"
    "$venv/bin/pip" freeze > "$venv/freeze.txt"  # what this run measured with
    touch "$stamp"
fi
bash guest/build.sh build/guest > /dev/null  # cached by a hash of the guest sources

mkdir -p "$out"
if [[ ! -f $ws/.stestr.conf ]]; then
    rm -rf "$ws"
    # Its own workspace registry: ~/.tempest's may name another checkout's "workspace" already.
    "$venv/bin/tempest" init --workspace-path "$out/workspaces.yaml" "$ws" > /dev/null
fi

rm -rf "$ws/.stestr" "$out/run.log" "$out/last-run.subunit"  # "last" is then this run, or nothing
set +e
.venv/bin/python scripts/tempest_setup.py --workspace "$ws" --data-dir "$out/ferry" \
    --guest-dir build/guest --workers "$workers" ${neutron_flag} -- \
    "$root/$venv/bin/tempest" run --regex "$regex" --exclude-list "$root/scripts/tempest-skips.txt" \
    --concurrency "$workers" 2>&1 | tee "$out/run.log"
rc=${PIPESTATUS[0]}
set -e

# The summary: totals, the failures grouped by cause, every failing test id; the raw subunit
# stream next to it.
(cd "$ws" && "$root/$venv/bin/stestr" last --subunit > "$root/$out/last-run.subunit" 2>/dev/null) || true
{
    echo "# tempest $TEMPEST_VERSION, regex $regex, $(date -u +%FT%TZ)"
    grep -E '^ - (Passed|Failed|Skipped|Expected Fail|Unexpected Success):|^Sum of execute time' "$out/run.log" || true
    grep -E '^(ferry serve at|after:|server log:)' "$out/run.log" || true
    "$venv/bin/python" scripts/tempest_causes.py "$out/last-run.subunit" 2>&1 || true
    echo "# failing tests"
    (cd "$ws" && "$root/$venv/bin/stestr" failing --list 2>/dev/null) || true
} > "$out/last-run.txt"
sed '/^# failing tests/q' "$out/last-run.txt"
echo "tempest.sh: details in $out/last-run.txt, $out/run.log, $out/last-run.subunit"

if [[ ${TEMPEST_REPORT_ONLY:-0} == 1 ]]; then
    exit 0
fi
exit "$rc"
