"""`make test` runs the suite on two xdist workers; the lab tests must all land on one
(each worker would otherwise bring up its own copy of the test lab and the second waits,
under a machine-wide lock, for the first worker's whole session: ~500 s per CI run)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO

LAB_FILES = ["tests/virt_lab/test_virt_lab_layout.py", "tests/virt_lab/test_virt_lab_xmlmap.py"]
OTHER = "tests/clock"


def test_every_lab_directory_test_runs_on_one_worker_and_the_rest_spread() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", "-p",
         "no:cacheprovider", *LAB_FILES, OTHER],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ran = re.findall(r"^\[(gw\d)\] \[\s*\d+%\] PASSED (\S+)", done.stdout, re.MULTILINE)
    lab = {gw for gw, test in ran if test.startswith("tests/virt_lab/")}
    other = {gw for gw, test in ran if not test.startswith("tests/virt_lab/")}
    assert len([t for _, t in ran if t.startswith("tests/virt_lab/")]) >= 20, done.stdout
    assert len(lab) == 1, f"the lab directory's tests ran on {sorted(lab)}"
    assert other, done.stdout  # the other tests still ran, somewhere
