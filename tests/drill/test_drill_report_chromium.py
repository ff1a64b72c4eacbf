"""The HTML report renders in a real headless Chromium (Debian's `chromium`, listed in
tests/system-packages.txt): the screenshot is not blank and shows the Gantt bars, the
progress curve and the trend."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from drorch.drill.history import History
from drorch.drill.report_html import report_html
from drorch.drill.trend import trend
from tests.drill.pngread import count_colour, read_png
from tests.drill.rows import add_run

GANTT_GREEN = (0x2D, 0xA4, 0x4E)
CURVE_BLUE = (0x09, 0x69, 0xDA)


def test_report_renders_in_chromium_with_its_charts(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: tests/system-packages.txt lists it (make test)"
    with History(tmp_path / "state") as h:
        for i, rto in enumerate([20.0, 22.0, 21.0]):
            add_run(h, 1000.0 * i, rto, 0.2)
        rows = h.rows()
    page = tmp_path / "report.html"
    page.write_text(report_html(rows[-1], trend(rows)))
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=800,1000",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    width, height, pixels = read_png(shot)
    assert (width, height) == (800, 1000)
    background = count_colour(pixels, (255, 255, 255), tolerance=2)
    assert background < width * height * 0.97, "the page is (almost) blank"
    assert count_colour(pixels, GANTT_GREEN) > 2000  # the Gantt bars
    assert count_colour(pixels, CURVE_BLUE) > 300  # the progress curve and the trend
