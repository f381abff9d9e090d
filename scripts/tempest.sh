#!/usr/bin/env bash
# Measure Ferry against OpenStack's own conformance suite (docs/conformance.md): install a pinned
# tempest into build/tempest-venv (once), and for each pass start a throw-away `ferry serve` with
# the test guest, write tempest.conf and a pre-provisioned accounts file against it, run the pass's
# tests, and stop the server (and reap its guests). Exits non-zero on any failure unless
# TEMPEST_REPORT_ONLY=1.
#
# Two passes by default, one after the other (each boots TCG guests: never two at once here):
#   volume  tempest.api.volume, Nova's volume proxies and the compute classes of key pairs, flavors,
#           limits, zones, server metadata and tags, with Neutron claimed (below), in build/tempest
#   cloud   identity and Nova's server create/show tests, `[service_available] neutron = false`
#           (issue 14: the server tests that need no network), in build/tempest-cloud
#
#   TEMPEST_PASSES       which passes (default "volume cloud")
#   TEMPEST_REGEX        one pass of these tests instead (in build/tempest)
#   TEMPEST_CONCURRENCY  tempest workers (default 2; one account set is provisioned per worker)
#   TEMPEST_REPORT_ONLY  1: print the summary and exit 0 whatever the result
#   TEMPEST_NEUTRON      for TEMPEST_REGEX: 1 (default) claims Neutron, so that tempest runs the
#                        attach, snapshot and volume-action classes it skips without one; Ferry's
#                        servers need no network and the run asks for none (docs/conformance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

TEMPEST_VERSION=47.0.0
venv=build/tempest-venv
workers=${TEMPEST_CONCURRENCY:-2}
stamp=$venv/.tempest-$TEMPEST_VERSION
VOLUME_REGEX='^tempest\.api\.(volume\.|compute\.(volumes\.|keypairs\.|flavors\.|limits\.|test_availability_zone|admin\.(test_flavors|test_availability_zone|test_keypairs_v210)|servers\.(test_server_metadata|test_server_tags|test_availability_zone)))'
CLOUD_REGEX='^tempest\.api\.(identity|compute\.servers\.(test_create_server|test_servers))\.'

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

# run_pass OUT REGEX NEUTRON(1|0): one tempest run against its own server; its exit status.
run_pass() {
    local out=$1 regex=$2 neutron_flag rc
    local ws=$out/workspace
    neutron_flag=$([[ $3 == 1 ]] && echo --neutron || true)
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
    return "$rc"
}

status=0
if [[ -n ${TEMPEST_REGEX:-} ]]; then
    run_pass build/tempest "$TEMPEST_REGEX" "${TEMPEST_NEUTRON:-1}" || status=$?
else
    for pass in ${TEMPEST_PASSES:-volume cloud}; do
        case $pass in
            volume) run_pass build/tempest "$VOLUME_REGEX" 1 || status=$? ;;
            cloud) run_pass build/tempest-cloud "$CLOUD_REGEX" 0 || status=$? ;;
            *) echo "tempest.sh: unknown pass $pass" >&2; exit 2 ;;
        esac
    done
fi

if [[ ${TEMPEST_REPORT_ONLY:-0} == 1 ]]; then
    exit 0
fi
exit "$status"
