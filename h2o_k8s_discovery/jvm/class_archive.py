"""The start-up cache's class archive: the classes an H2O start loads, parsed and verified once.

``prepare-jvm`` starts H2O once with ``-XX:DumpLoadedClassList``, writes a static class-data-
sharing (CDS) archive of those ~5,800 classes with ``-Xshare:dump``, and ``run`` maps it with
``-XX:SharedArchiveFile``: three JVMs starting at once on two cores reach their cloud about 2 s
sooner (``bench/jvm_start.py``).

The non-obvious decision: an archive is kept only once H2O itself has shown that it binds every
REST route exactly as without it. HotSpot keeps a class's methods sorted by the address of their
name; methods sharing a name (an overload and the compiler's bridge) stay in whatever order that
sort left them, and an archive fixes the order it found when it was written. H2O binds each
route to the first method of the handler's name in ``Class.getMethods()`` whose second parameter
is a ``Schema`` (``water.api.Route.resolveMethod``), so an archive can bind ``POST /4/sessions``
to the bridge ``exec(int, Schema)``, and the first session kills the cloud: a dynamic archive
recorded at exit does. Every handler class is loaded while H2O registers its routes, so every
one is in the archive, with the archive's order at every start: comparing H2O's own route table
(``/3/Metadata/endpoints``: the handler method, input and output schema of each route) from the
recording start with the table from a start on the archive proves the archive, once, for every
start it is used by. H2O's other uses of ``getMethods()`` collect all methods (the order of a
metrics table) or look up a name no other method has. An archive that binds any route otherwise
is not kept, and the cache then holds the native libraries only.

The JVM maps an archive only for the jar path, size and modification second it was written for,
and silently starts without it otherwise; the manifest records them, so ``run`` can say why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ARCHIVE_FILE = "classes.jsa"


@dataclass(frozen=True, slots=True)
class ArchivedJar:
    """The jar an archive was written for, as the JVM checks it: real path, size, mtime second."""

    path: str
    size: int
    mtime: int

    @classmethod
    def of(cls, jar: Path) -> ArchivedJar:
        stat = jar.stat()
        return cls(os.path.realpath(jar), stat.st_size, int(stat.st_mtime))

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "size": self.size, "mtime": self.mtime}

    @classmethod
    def from_json(cls, data: object) -> ArchivedJar:
        if not isinstance(data, dict):
            raise TypeError("the class archive's jar is not an object")
        path, size, mtime = data.get("path"), data.get("size"), data.get("mtime")
        if not isinstance(path, str) or not isinstance(size, int) or not isinstance(mtime, int):
            raise TypeError("the class archive's jar needs a path, a size and an mtime")
        return cls(path, size, mtime)


def mismatch(recorded: ArchivedJar, jar: Path) -> str | None:
    """Why the JVM would not map an archive written for ``recorded`` with ``jar``, or None."""
    try:
        current = ArchivedJar.of(jar)
    except OSError as err:
        return f"cannot read {jar}: {err.strerror}"
    if current.path != recorded.path:
        return f"it was written for the jar at {recorded.path}, this one is at {current.path}"
    if (current.size, current.mtime) != (recorded.size, recorded.mtime):
        return f"{jar} has another size or modification time than when it was written"
    return None
