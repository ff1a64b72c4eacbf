"""`python -m tests.bench` (or `make bench`): run every tests/bench/bench_*.py module.

Each module has `main() -> int` that prints its figures next to their targets (and ratios
to a peer measured in the same run). Run one with `python -m tests.bench NAME`.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(p.stem for p in here.glob("bench_*.py"))
    if argv:
        names = [n for n in names if any(a in n for a in argv)]
    status = 0
    for name in names:
        print(f"=== {name}", flush=True)
        module = importlib.import_module(f"tests.bench.{name}")
        status |= int(module.main())
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
