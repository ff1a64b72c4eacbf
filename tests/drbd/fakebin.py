"""Fake `drbdadm` and `drbdsetup` executables for node-local tests: shell scripts on PATH
that print recorded-format fixtures, as the real tools would on a node with DRBD."""

from __future__ import annotations

import stat
from pathlib import Path

from tests.drbd.conftest import FIXTURES

DRBDSETUP = """#!/bin/sh
# fake drbdsetup: prints the fixture of the state named in $DRBD_FAKE_STATE
echo "drbdsetup $*" >> "$DRBD_FAKE_LOG"
state="${DRBD_FAKE_STATE:-connected-secondary}"
if [ -n "$DRBD_FAKE_STATE_FILE" ]; then state="$(cat "$DRBD_FAKE_STATE_FILE")"; fi
case "$1" in
  status)
    if [ "$state" = "down" ]; then echo "$2: No such resource" >&2; exit 10; fi
    if [ "$state" = "no-module" ]; then
      cat "$FIXTURES/drbdsetup-status-no-module.stderr" >&2; exit 20
    fi
    cat "$FIXTURES/status-$state.json" ;;
  get-gi)
    cat "$FIXTURES/get-gi.txt" ;;
  events2)
    if [ "$state" = "no-module" ]; then
      cat "$FIXTURES/drbdsetup-status-no-module.stderr" >&2; exit 20
    fi
    cat "$FIXTURES/events2-${DRBD_FAKE_EVENTS:-$state}.txt" ;;
  *) echo "fake drbdsetup: unsupported $*" >&2; exit 1 ;;
esac
"""

DRBDADM = """#!/bin/sh
# fake drbdadm: records the call; fails with a fixture when $DRBD_FAKE_FAIL names one
echo "drbdadm $*" >> "$DRBD_FAKE_LOG"
if [ -n "$DRBD_FAKE_FAIL_FILE" ] && [ -s "$DRBD_FAKE_FAIL_FILE" ]; then
  read -r DRBD_FAKE_FAIL DRBD_FAKE_RC < "$DRBD_FAKE_FAIL_FILE"
fi
if [ -n "$DRBD_FAKE_FAIL" ]; then
  cat "$FIXTURES/$DRBD_FAKE_FAIL" >&2
  exit "${DRBD_FAKE_RC:-11}"
fi
exit 0
"""


def install_fake_drbd(folder: Path) -> Path:
    """Write the two scripts into `folder` (put it first on PATH); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("drbdsetup", DRBDSETUP), ("drbdadm", DRBDADM)):
        path = folder / name
        path.write_text(text.replace('"$FIXTURES', f'"{FIXTURES}'))
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder
