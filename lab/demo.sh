#!/usr/bin/env bash
# `make demo`: the hurricane-warning walkthrough on the simulated two-site lab.
# Needs no root and no network: hypervisors and replication are simulated, and their
# state lives in a scratch directory (removed afterwards unless DRORCH_DEMO_KEEP=1).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/drorch-demo.XXXXXX")"
cleanup() { [[ "${DRORCH_DEMO_KEEP:-0}" == 1 ]] && echo "state kept in $work" || rm -rf "$work"; }
trap cleanup EXIT
cp "$here/sim.yaml" "$work/sim.yaml"
cfg="$work/sim.yaml"

# The venv's drorch when there is one (`make demo` builds it), else whatever is on PATH.
if [[ -x "$here/../.venv/bin/drorch" ]]; then
    drorch() { "$here/../.venv/bin/drorch" "$@"; }
elif ! command -v drorch >/dev/null; then
    drorch() { python3 -m drorch "$@"; }
fi

# Bold headings only on a terminal, and never with NO_COLOR set (https://no-color.org).
if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
    say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    say() { printf '\n== %s\n' "$*"; }
fi

say "1. Validate the cluster description (every problem at once, FILE:LINE:COL: CODE)"
drorch config validate -c "$cfg"

say "2. Current status of both sites"
drorch status -c "$cfg"

say "3. A hurricane is forecast for site A: plan the migration to B (nothing is changed)"
drorch plan migrate --to B -c "$cfg"

say "4. Carry out the live hand-over: migrate the web VM to B (progress, downtime, reason)"
drorch vm migrate web --to B -c "$cfg"
drorch vm list -c "$cfg"

say "5. A failover while A is still up is refused (split-brain risk; exit 1)"
if drorch plan failover --to B -c "$cfg"; then
    echo "expected the failover plan to be blocked while A is reachable" >&2
    exit 1
fi

say "6. A broken file is rejected with exact positions (exit 2)"
sed -e 's/lease_timeout: 10s/lease_timeout: 4s/' -e 's/^  heartbeat: 1s/  heartbeet: 1s/' \
    "$cfg" > "$work/broken.yaml"
if drorch config validate -c "$work/broken.yaml"; then
    echo "expected the broken file to be rejected" >&2
    exit 1
fi
echo "(rejected, as it should be)"
