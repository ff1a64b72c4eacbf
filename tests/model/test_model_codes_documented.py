"""Every report code the validator can emit is listed in the README's config section."""

from __future__ import annotations

import re
from pathlib import Path

import drorch.model

MODEL_DIR = Path(drorch.model.__file__).parent
CODE_CALL = re.compile(r'(?:error|warn|BadValue|ReportItem)\(\s*"([a-z][a-z-]+)"')


def emitted_codes() -> set[str]:
    codes: set[str] = set()
    for path in MODEL_DIR.glob("*.py"):
        codes |= set(CODE_CALL.findall(path.read_text()))
    return codes


def test_every_code_is_in_the_readme(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    section = readme.split("<!-- section: config -->")[1].split("<!-- /section: config -->")[0]
    # the validator's codes are the table under "### Validation" (other tables in the
    # config section list plan actions and status checks, not validation codes)
    section = section.split("### Validation", 1)[1].split("\n### ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z-]+)`", section, flags=re.MULTILINE))
    codes = emitted_codes()
    assert len(codes) >= 30
    assert codes - documented == set()
    assert documented - codes == set(), "README documents codes nothing emits"
