"""Dependency floors: CI runs the quick suite on the lowest versions pyproject allows.

``make test`` (what ``.ci/run`` calls) ends with ``make test-floors``, which installs the
package with every runtime dependency pinned to its floor (``scripts/floors.py``) into a venv
of its own and runs ``pytest -m 'not slow'`` there: a floor that does not work fails CI. These
tests hold that path together: the pins, and the Makefile's wiring.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "floors.py"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_every_runtime_dependency_is_pinned_to_its_floor() -> None:
    """One ``name==floor`` a line, one per entry of pyproject's dependencies, in order."""
    done = run_script()
    assert done.returncode == 0, done.stderr
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = done.stdout.splitlines()
    assert len(pins) == len(dependencies)
    for pin, requirement in zip(pins, dependencies, strict=True):
        name, _, version = pin.partition("==")
        assert requirement.startswith(name)
        assert f">={version}" in requirement


def test_a_dependency_without_a_floor_is_refused(tmp_path: Path) -> None:
    """A dependency with no ``>=`` bound stops the script with a message naming it."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["aiohttp>=3.9", "dnspython<3"]\n')
    done = run_script(str(pyproject))
    assert done.returncode == 1
    assert "dependency 'dnspython<3' has no >= floor" in done.stderr


def recipe(target: str) -> list[str]:
    """The command lines of ``target`` in the Makefile."""
    lines = (REPO / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    commands = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        commands.append(line.strip())
    return commands


def test_ci_runs_the_quick_suite_on_the_floors() -> None:
    """``make test`` calls ``test-floors``, which pins the floors and runs the quick suite."""
    assert "$(MAKE) test-floors" in recipe("test")
    floors = recipe("test-floors")
    assert any("scripts/floors.py >" in line for line in floors)
    assert any(
        "uv pip install" in line and "-c $(FLOORS_VENV).constraints" in line for line in floors
    )
    assert floors[-1] == "$(FLOORS_VENV)/bin/pytest -m 'not slow'"
    assert "make test\n" in (REPO / ".ci" / "run").read_text()
