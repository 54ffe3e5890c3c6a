"""Where the repository and the stand-ins are, and the import path a child Python needs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: What a child Python needs to import the package and its dependencies, venv or not: the
#: test process's own import path.
PYTHONPATH = os.pathsep.join(
    dict.fromkeys([str(REPO), *(entry for entry in sys.path if entry and os.path.isdir(entry))])
)
CHILDREN = Path(__file__).parent / "children"
