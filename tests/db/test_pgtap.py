"""Run the pgTAP suite (tests/pgtap/*.sql) against the test database, one pytest test per file.

Each file is run by psql in one go; its TAP output is parsed here. A file fails when psql
fails (an SQL error stops it: ON_ERROR_STOP), when it has no plan, when the number of tests run
differs from the plan, when test numbers skip or repeat, or when any test is `not ok` (a `# TODO`
test excepted). The failure message holds the `not ok` lines with their diagnostics.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.db

PGTAP_DIR = Path(__file__).resolve().parent.parent / "pgtap"
PSQL = "/usr/bin/psql"
PGTAP_FILES = sorted(PGTAP_DIR.glob("*.sql"))

PLAN = re.compile(r"^1\.\.(\d+)")
RESULT = re.compile(r"^(not ok|ok) (\d+)\b(.*)$")


@dataclass
class TapReport:
    planned: int | None = None
    numbers: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        found = list(self.failures)
        if self.planned is None:
            found.append("no plan (1..N) in the output")
        elif len(self.numbers) != self.planned:
            found.append(f"planned {self.planned} tests but ran {len(self.numbers)}")
        if self.numbers != list(range(1, len(self.numbers) + 1)):
            found.append(f"test numbers are not 1..{len(self.numbers)} in order")
        return found


def parse_tap(output: str) -> TapReport:
    """Collect the plan, the test numbers and each `not ok` test with its `#` diagnostics."""
    report = TapReport()
    current: list[str] | None = None
    for line in output.splitlines():
        if (match := PLAN.match(line)) and report.planned is None:
            report.planned = int(match.group(1))
            current = None
        elif match := RESULT.match(line):
            report.numbers.append(int(match.group(2)))
            todo = re.search(r"#\s*TODO\b", match.group(3), re.IGNORECASE)
            if match.group(1) == "not ok" and not todo:
                current = [line]
                report.failures.append("")
            else:
                current = None
        elif line.startswith("#"):
            if current is not None:
                current.append(line)
                report.failures[-1] = "\n".join(current)
            elif line.startswith("# Looks like"):
                report.failures.append(line)
    return report


def run_pgtap_file(dsn: str, path: Path) -> tuple[subprocess.CompletedProcess[str], TapReport]:
    result = subprocess.run(
        [
            PSQL,
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "--pset",
            "pager=off",
            "-d",
            dsn,
            "-f",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    return result, parse_tap(result.stdout)


def test_suite_is_present() -> None:
    names = {p.name for p in PGTAP_FILES}
    assert {"010_schema.sql", "020_functions.sql", "030_security.sql", "040_queue.sql"} <= names


@pytest.mark.parametrize("path", PGTAP_FILES, ids=[p.name for p in PGTAP_FILES])
def test_pgtap_file(db_dsn: str, path: Path) -> None:
    result, report = run_pgtap_file(db_dsn, path)
    problems = report.problems()
    if result.returncode != 0:
        problems.insert(0, f"psql exited with {result.returncode}:\n{result.stderr.strip()}")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)
    assert report.planned and report.planned > 0


# The parser itself: a broken report must not pass.
@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("1..2\nok 1 - a\nok 2 - b\n", []),
        (
            "1..2\nok 1 - a\nnot ok 2 - b\n# Failed test 2\n#  have: 1\n",
            ["not ok 2 - b\n# Failed test 2\n#  have: 1"],
        ),
        (
            "1..3\nok 1 - a\nok 2 - b\n# Looks like you planned 3 tests but ran 2\n",
            ["# Looks like you planned 3 tests but ran 2", "planned 3 tests but ran 2"],
        ),
        ("ok 1 - a\n", ["no plan (1..N) in the output"]),
        ("1..2\nok 1 - a\nok 1 - b\n", ["test numbers are not 1..2 in order"]),
        ("1..1\nnot ok 1 - later # TODO not yet\n", []),
    ],
    ids=["pass", "not-ok", "short-run", "no-plan", "misnumbered", "todo"],
)
def test_tap_parser(output: str, expected: list[str]) -> None:
    assert parse_tap(output).problems() == expected
