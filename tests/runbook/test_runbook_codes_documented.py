"""Every code runbook validation can emit is in the README's runbooks table, and back."""

from __future__ import annotations

import re
from pathlib import Path

import drorch.runbook

RUNBOOK_DIR = Path(drorch.runbook.__file__).parent
CALL = re.compile(r'(?:\.error|ArgProblem)\(\s*"([a-z][a-z-]+)"')


def test_every_validation_code_is_documented(repo_root: Path) -> None:
    codes: set[str] = set()
    for path in [*RUNBOOK_DIR.glob("load*.py"), RUNBOOK_DIR / "steps" / "_params.py"]:
        codes |= set(CALL.findall(path.read_text()))
    readme = (repo_root / "README.md").read_text()
    section = readme.split("<!-- section: runbooks -->")[1].split("<!-- /section: runbooks -->")[0]
    documented = set(re.findall(r"^\| `([a-z-]+)`", section, flags=re.MULTILINE))
    assert len(codes) >= 12
    assert codes - documented == set()
    assert documented - codes == set()
