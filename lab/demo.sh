#!/usr/bin/env bash
# `make demo`: the mission's story. When QEMU and libvirt can run on this machine (root,
# network namespaces, an x86_64 Debian where qemu-system-x86 is installed or installable),
# it installs the lab's packages (lab/lab-packages.txt), builds the venv with the libvirt
# binding and runs the real thing, `drorch lab demo`: two sites in network namespaces, one
# libvirtd each, a witness, agents and a TCG guest on a replicated disk; then `drorch lab
# down`. Otherwise it says why, plainly, and runs the simulated story (lab/demo-sim.sh:
# real pyrepl and quorum daemons on loopback under simulated VMs; no root needed).
#
# DRORCH_DEMO=lab|sim forces one (lab fails when the lab cannot run). DRORCH_DEMO_LAB_OPTS
# picks the lab instance (default "--name make-demo --prefix md --subnet 10.77.90": its own,
# so an operator's default lab is left alone). DRORCH_DEMO_KEEP=1 leaves the lab (or the
# simulated state) in place.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
venv="${VENV:-.venv}"
[[ "$venv" == /* ]] || venv="$repo/$venv"
want="${DRORCH_DEMO:-auto}"

# Why the real lab cannot run here; prints nothing when it can.
why_not_lab() {
    if [[ "$(uname -m)" != x86_64 ]]; then
        echo "this is $(uname -m), not x86_64 (the lab's guests are x86_64)"; return
    fi
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "not root (network namespaces and libvirtd need root)"; return
    fi
    if ! unshare --net true 2>/dev/null; then
        echo "no network namespace can be created here (unshare --net failed)"; return
    fi
    if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
        echo "no apt/dpkg: the lab installs Debian packages"; return
    fi
    if ! dpkg-query -W -f='${Status}' qemu-system-x86 2>/dev/null | grep -q 'install ok installed'; then
        if ! apt-cache policy qemu-system-x86 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            apt-get update -qq >/dev/null 2>&1 || true  # a fresh machine: no package lists yet
        fi
        if ! apt-cache policy qemu-system-x86 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            echo "qemu-system-x86 is neither installed nor installable (apt-cache policy)"; return
        fi
    fi
}

case "$want" in
    sim) reason="you asked for the simulated story (DRORCH_DEMO=sim)" ;;
    lab|auto) reason="$(why_not_lab)" ;;
    *) echo "DRORCH_DEMO must be lab, sim or unset, not '$want'" >&2; exit 2 ;;
esac
if [[ -n "$reason" && "$want" == lab ]]; then
    echo "make demo: the real lab cannot run here: $reason" >&2
    exit 1
fi

if [[ -n "$reason" ]]; then
    cat <<MSG
== make demo: SIMULATED story. The real two-site lab (QEMU + libvirt) does not run:
   $reason.
   What follows runs real replication and witness daemons on 127.0.0.1 under SIMULATED
   virtual machines; no guest boots. On a root x86_64 Debian machine, make demo runs the
   real lab (drorch lab demo).
MSG
    bash "$repo/tests/install-system-packages.sh" lab/demo-packages.txt
    "${MAKE:-make}" -s -C "$repo" base
    exec bash "$here/demo-sim.sh"
fi

echo "== make demo: the REAL two-site lab (QEMU/TCG guests, libvirtd per site, network namespaces)"
bash "$repo/tests/install-system-packages.sh" lab/lab-packages.txt
"${MAKE:-make}" -s -C "$repo" venv  # drorch with the [libvirt] extra (libvirt-python)
# the guest's kernel is `apt-get download`ed (drorch/lab/image.py): it needs package
# lists, which a machine that already had every package may not have
if ! apt-cache policy linux-image-cloud-amd64 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt-get update -qq
fi
# its own lab instance by default, so that `lab down` at the end never takes an operator's
# lab (the default one) down with it
read -r -a opts <<<"${DRORCH_DEMO_LAB_OPTS:---name make-demo --prefix md --subnet 10.77.90}"
drorch=("$venv/bin/python" -m drorch)
down() {
    if [[ "${DRORCH_DEMO_KEEP:-0}" == 1 ]]; then
        echo "the lab is left up (DRORCH_DEMO_KEEP=1): drorch lab down ${opts[*]} stops it"
    else
        echo "== drorch lab down ${opts[*]}"
        "${drorch[@]}" lab down "${opts[@]}"
    fi
}
trap down EXIT
cd "$repo"
"${drorch[@]}" lab demo "${opts[@]}"
