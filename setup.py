"""Setuptools shim: the project is described in pyproject.toml. This only adds one build
step: the checkout's top-level `runbooks/` (the shipped runbooks, which live outside the
package so that operators find them at the top of the tree) is copied into the wheel as
`drorch/runbooks/`, where an installed drorch looks for them (drorch/shipped_runbooks.py).
MANIFEST.in puts `runbooks/` into the sdist, so a wheel built from the sdist has them too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

RUNBOOKS = Path(__file__).resolve().parent / "runbooks"


class BuildPyWithRunbooks(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's runbooks/ in place
        if not RUNBOOKS.is_dir():
            raise SystemExit(f"drorch build: {RUNBOOKS} is missing (the shipped runbooks)")
        shutil.copytree(
            RUNBOOKS,
            Path(self.build_lib) / "drorch" / "runbooks",
            ignore=lambda _dir, names: [
                n for n in names if not n.endswith(".yaml") and not (Path(_dir) / n).is_dir()
            ],
            dirs_exist_ok=True,
        )


setup(cmdclass={"build_py": BuildPyWithRunbooks})
