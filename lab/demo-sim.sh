#!/usr/bin/env bash
# `make demo` where the real lab cannot run (lab/demo.sh decides): the hurricane-warning
# story on lab/sim.yaml, carried out for real by the runbook engine: real pyrepl
# replicas (one `drorch repl serve` daemon per replica) and a real quorum daemon on
# loopback, under simulated VMs (hypervisor.driver: sim, hypervisor.replication: real).
# Needs no root; every address is 127.0.0.1. Everything it starts is stopped by PID at
# the end, and its scratch folder is removed (unless DRORCH_DEMO_KEEP=1).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/drorch-demo.XXXXXX")"
cfg="$work/sim.yaml"
quorumd_pid=""

# The venv's drorch when there is one (`make demo` builds it), else whatever is on PATH.
# `run` is an array, so a background `"${run[@]}" ... &` is the daemon itself ($! is its PID).
py=python3
if [[ -x "$here/../.venv/bin/drorch" ]]; then
    run=("$here/../.venv/bin/drorch")
    py="$here/../.venv/bin/python"
elif command -v drorch >/dev/null; then
    run=("$(command -v drorch)")  # the path: a bare `drorch` would call the function below
else
    run=(python3 -m drorch)
fi
drorch() { "${run[@]}" "$@"; }

cleanup() {
    set +e
    if [[ -f "$cfg" ]]; then
        drorch repl down -c "$cfg" --demote --yes >"$work/down.log" 2>&1 || cat "$work/down.log" >&2
    fi
    if [[ -n "$quorumd_pid" ]]; then
        kill "$quorumd_pid" 2>/dev/null && wait "$quorumd_pid" 2>/dev/null
    fi
    if [[ "${DRORCH_DEMO_KEEP:-0}" == 1 ]]; then echo "state kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Bold headings only on a terminal, and never with NO_COLOR set (https://no-color.org).
if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
    say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    say() { printf '\n== %s\n' "$*"; }
fi

# Free loopback ports: the witness, and two consecutive ones per pyrepl port (one per site).
# drorch.testing.ports hands them out below the kernel's ephemeral range through one
# machine-wide cursor, so a concurrent test run cannot be given the same ports (stdlib only:
# the checkout's copy is importable even where $py has no drorch installed).
ports="$(PYTHONPATH="$here/..${PYTHONPATH:+:$PYTHONPATH}" "$py" -m drorch.testing.ports 5 --span 2)"
read -r wport rp1 rp2 np1 np2 <<<"$ports"

say "0. Set up: certificates, the quorum witness, and lab/sim.yaml pointed at them"
mkdir -p "$work/witness" "$work/.drorch-state/disks" "$work/state"
cp -r "$here/xml" "$work/xml"          # the VMs' domain XML (sim.yaml's `xml:`)
export DRORCH_STATE_DIR="$work/state" DRORCH_RUNBOOKS="$here/../runbooks"
certs="$(drorch quorum certs --out "$work/witness" server hq-dr-A hq-dr-B)"
echo "$certs"
fingerprint="$(awk '$1 == "server" {print $2}' <<<"$certs")"
cat > "$work/witness/quorumd.yaml" <<EOF
listen: 127.0.0.1:$wport
cert: server.crt
key: server.key
state_file: quorumd.state
heartbeat_ms: 1000      # = quorum.heartbeat in the cluster file
lease_ms: 10000         # = quorum.lease_timeout
switch_delay_ms: 5000   # = quorum.switch_delay
clusters:
  hq-dr:
    sites:
      A: [hq-dr-A.crt]
      B: [hq-dr-B.crt]
EOF
"${run[@]}" quorumd --config "$work/witness/quorumd.yaml" --init 2>>"$work/quorumd.log" &
quorumd_pid=$!
sed -e "s/address: 127.0.0.1:7443/address: 127.0.0.1:$wport/" \
    -e "s/^  fingerprint: .*/  fingerprint: \"$fingerprint\"\n  cert: witness\/hq-dr-{site}.crt\n  key: witness\/hq-dr-{site}.key/" \
    -e "s/^  bandwidth_mibps: 1000/  bandwidth_mibps: 1000\n  replication: real         # real pyrepl daemons under the simulated VMs/" \
    -e "s/port: 7789/port: $rp1/" -e "s/port: 7791/port: $rp2/" \
    -e "s/nbd_port: 10809/nbd_port: $np1/" -e "s/nbd_port: 10811/nbd_port: $np2/" \
    "$here/sim.yaml" > "$cfg"
echo "quorumd pid $quorumd_pid on 127.0.0.1:$wport; cluster file $cfg"

say "1. Validate the cluster description (every problem at once, FILE:LINE:COL: CODE)"
drorch config validate -c "$cfg"

say "2. Bring up the replicated volumes: primary at A, secondary at B (day 0)"
drorch repl up -c "$cfg" --initial-primary A

say "3. Status of both sites (exit 0 healthy, 1 degraded, 2 broken)"
drorch status -c "$cfg" || echo "(status exit $?)"

say "4. A hurricane is forecast for site A: the plan, then a dry run of the runbook"
drorch plan migrate --to B -c "$cfg"
drorch migrate --to B -c "$cfg" --dry-run

say "5. Carry it out: runbooks/hurricane-planned-migration.yaml moves everything to B"
drorch migrate --to B -c "$cfg" --yes
last_run() { drorch runbook history --limit 1 --format json | "$py" -c 'import json,sys; print(json.load(sys.stdin)[0]["run_id"])'; }
there="$(last_run)"
drorch runbook show "$there"
drorch status -c "$cfg" || echo "(status exit $?)"

say "6. The storm has passed: the weekly drill's way back, the same runbook to A"
drorch migrate --to A -c "$cfg" --yes
back="$(last_run)"
drorch runbook show "$back"

say "7. A failover while A is up is refused (split-brain risk; exit 1)"
if drorch plan failover --to B -c "$cfg"; then
    echo "expected the failover plan to be blocked while A is reachable" >&2
    exit 1
fi

say "8. A broken file is rejected with exact positions (exit 2)"
sed -e 's/lease_timeout: 10s/lease_timeout: 4s/' -e 's/^  heartbeat: 1s/  heartbeet: 1s/' \
    "$cfg" > "$work/broken.yaml"
if drorch config validate -c "$work/broken.yaml"; then
    echo "expected the broken file to be rejected" >&2
    exit 1
fi
echo "(rejected, as it should be)"
