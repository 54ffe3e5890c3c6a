"""docs/RELIABILITY.md and the reliability tests stay in step: every row a test, every test a row.

The table is the suite's report; a row whose test was renamed, or a test nobody listed, makes
the report lie. So do xfail markers and "xfail" results that disagree: a bug fixed in the code
turns its strict xfail red, and the row's result must change with the marker.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

from tests.support.paths import REPO

DOC = REPO / "docs" / "RELIABILITY.md"
SUITE = Path(__file__).parent
NODE_ID = re.compile(r"`tests/reliability/(test_\w+)\.py::(test_\w+)(?:\[[^\]]*\])?`")


def rows() -> list[list[str]]:
    """The cells of every table row that names a test."""
    found = []
    for line in DOC.read_text().splitlines():
        if line.startswith("|") and NODE_ID.search(line):
            found.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return found


def named_in(text: str) -> set[str]:
    return {f"{module}::{function}" for module, function in NODE_ID.findall(text)}


def has_xfail(test: Any) -> bool:
    """True when the test carries an xfail mark, itself or on one of its parameters."""
    for mark in getattr(test, "pytestmark", []):
        if mark.name == "xfail":
            return True
        if mark.name == "parametrize":
            for value in mark.args[1]:
                if any(m.name == "xfail" for m in getattr(value, "marks", ())):
                    return True
    return False


def suite_tests() -> dict[str, bool]:
    """``module::function`` of every test in the suite -> whether it carries an xfail."""
    found: dict[str, bool] = {}
    for path in sorted(SUITE.glob("test_*.py")):
        module = importlib.import_module(f"tests.reliability.{path.stem}")
        for name, member in vars(module).items():
            if name.startswith("test_") and inspect.isfunction(member):
                found[f"{path.stem}::{name}"] = has_xfail(member)
    return found


def test_every_test_has_a_row_and_every_row_a_test() -> None:
    """Each test is listed; each listed test exists; xfail results match xfail markers."""
    suite = suite_tests()
    table = rows()
    listed = set().union(*(named_in(row[-1]) for row in table))
    assert sorted(listed - set(suite)) == [], "rows naming tests that do not exist"
    assert sorted(set(suite) - listed) == [], "tests without a row in docs/RELIABILITY.md"
    xfail_rows = set().union(*(named_in(row[-1]) for row in table if "xfail" in row[-2]))
    marked = {name for name, xfail in suite.items() if xfail}
    assert sorted(xfail_rows - marked) == [], "rows saying xfail for tests without the marker"
    assert sorted(marked - xfail_rows) == [], "xfail markers without an xfail row"
