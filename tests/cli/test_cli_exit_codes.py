"""The README's exit-code table, `drorch.cli.exits.ExitCode` and the literal exit
statuses in `drorch/cli` say the same thing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from drorch.cli.exits import ExitCode

CLI = Path(__file__).resolve().parents[2] / "drorch" / "cli"
ROW = re.compile(r"^\| (\d+) \| ([a-z-]+) \| (.+) \|$")


def readme_table(readme: str) -> dict[int, str]:
    section = readme.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    return {int(m[1]): m[2] for line in section.splitlines() if (m := ROW.match(line))}


def test_readme_table_is_the_enum(repo_root: Path) -> None:
    table = readme_table((repo_root / "README.md").read_text())
    assert table == {int(c): c.name.lower().replace("_", "-") for c in ExitCode}


def _literal_exits(tree: ast.AST) -> set[int]:
    """sys.exit(N), SystemExit(N) and EXIT_... = N constants (also tuple assignments)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("exit", "SystemExit") and isinstance(node.args[0].value, int):
                found.add(node.args[0].value)
        if isinstance(node, ast.Assign):
            for target in node.targets:
                names = target.elts if isinstance(target, ast.Tuple) else [target]
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                for n, v in zip(names, values, strict=False):
                    if (
                        isinstance(n, ast.Name)
                        and n.id.startswith("EXIT_")
                        and isinstance(v, ast.Constant)
                        and isinstance(v.value, int)
                    ):
                        found.add(v.value)
    return found


def test_every_literal_exit_in_the_cli_is_in_the_table(repo_root: Path) -> None:
    table = readme_table((repo_root / "README.md").read_text())
    stray = {
        path.name: codes - set(table)
        for path in sorted(CLI.glob("*.py"))
        if (codes := _literal_exits(ast.parse(path.read_text())))
        and codes - set(table)
        and path.name != "drbd_cmd.py"  # fence-peer answers DRBD with DRBD's handler codes
    }
    assert stray == {}


def test_the_scan_finds_literals() -> None:
    """The scan can fail: it sees each form of a literal exit status."""
    code = "import sys\nEXIT_A, EXIT_B = 1, 9\nsys.exit(7)\nraise SystemExit(8)\n"
    assert _literal_exits(ast.parse(code)) == {1, 9, 7, 8}


# Left to their owners (replfence: cli/repl_fence_cmd.py; drills: cli/scheduler_cmd.py),
# see coord/notes-operator.md: delete an entry once its option takes `duration`.
DURATION_TODO = {
    ("scheduler", "run", "poll_interval"),
}
TIMING = re.compile(r"timeout|deadline|interval|wait|delay|downtime|every|period")


def test_every_duration_option_takes_a_unit() -> None:
    """`--timeout 10s` everywhere: each timing option parses durations (`duration`)."""
    import click

    from drorch.cli.flags import duration
    from tests.cli.test_cli_no_tracebacks import ALL

    numeric = {
        (*path, p.name)
        for path, cmd in ALL
        for p in cmd.params
        if isinstance(p, click.Option)
        and not p.is_flag
        and TIMING.search(p.name or "")
        and getattr(p.callback, "__name__", "") not in (duration.__name__, "_duration")
    }
    assert numeric - DURATION_TODO == set()
