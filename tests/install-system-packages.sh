#!/usr/bin/env bash
# Install the Debian packages listed in LIST (default tests/system-packages.txt; paths are
# relative to the repository) that are missing. Runs apt only when something is missing
# and we are root; otherwise says what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
list="${1:-tests/system-packages.txt}"
mapfile -t wanted < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$list")
missing=()
for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages (run as root to install): ${missing[*]}" >&2
    exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
