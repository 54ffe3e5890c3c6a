"""Print pip constraints pinning each runtime dependency to the lowest version pyproject allows.

``make test-floors`` installs the package with these constraints, so the quick suite runs on
exactly the floors (``dnspython==2.6``...), while the development tools resolve as usual
(``uv pip install --resolution lowest-direct`` would lower pytest and mypy too). A dependency
without a ``>=`` floor is an error: the floor is what a user's resolver may pick.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
#: ``name[extras]>=version`` within a requirement, e.g. ``aiohttp>=3.9,<4``.
FLOOR = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*[^;]*?>=\s*([^,;\s]+)")


def floors(pyproject: Path = PYPROJECT) -> list[str]:
    """``name==floor`` for every entry of ``[project].dependencies``."""
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pins = []
    for requirement in dependencies:
        match = FLOOR.match(requirement)
        if match is None:
            raise SystemExit(f"{pyproject}: dependency {requirement!r} has no >= floor; add one")
        pins.append(f"{match[1]}=={match[2]}")
    return pins


if __name__ == "__main__":
    # An optional argument names another pyproject.toml (the tests use it).
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else PYPROJECT
    sys.stdout.write("".join(f"{pin}\n" for pin in floors(path)))
