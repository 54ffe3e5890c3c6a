"""A per-jar cache that lets the H2O JVM start seconds sooner: native libraries and a CDS archive.

Two costs dominate an H2O JVM's start on a small machine, and they are the same on every start:

- the XGBoost extension copies ~157 MB of native libraries out of the jar into
  ``java.io.tmpdir`` (and leaves them behind when the JVM is killed), unless
  ``System.loadLibrary`` finds them on ``java.library.path`` first;
- thousands of classes are read, parsed and verified from the 280 MB jar; a class-data-sharing
  (CDS) archive written by an earlier start maps them in ready-made.

``startup_prepare`` builds both once (at image build time, or by ``make jar``): it unpacks
the libraries and starts the jar alone on loopback until its REST API answers, then stops it so
the JVM writes the archive as it exits. ``run`` adds ``-Djava.library.path`` and
``-XX:SharedArchiveFile`` when a cache made for this very jar exists.

The non-obvious decision: the cache can only ever cost speed, never correctness. The JVM checks
the archive itself (same jar path, size and time, same JDK) and starts without it, with a warning,
when it does not match; the libraries are the jar's own bytes; a cache made for another jar is
not used at all; options the user set in ``JAVA_OPTS`` always win.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from h2o_k8s_discovery.errors import StartupCacheError

log = logging.getLogger(__name__)

ARCHIVE = "h2o.jsa"
#: The same classes for JVMs without compressed oops (heaps of 32 GB or more), which cannot map
#: an archive made with them.
NOCOOPS_ARCHIVE = "h2o-nocoops.jsa"
NATIVE_DIR = "native"
MANIFEST = "manifest.json"
#: java.library.path's built-in default on 64-bit Linux (after $LD_LIBRARY_PATH): kept behind
#: ours so that libraries found there before are still found.
#: Compressed oops need a heap below 32 GB (with the default 8-byte object alignment).
_COMPRESSED_OOPS_LIMIT = 32 << 30
_SIZE = re.compile(r"(\d+)([kKmMgGtT]?)")
_DEFAULT_MAX_RAM_PERCENTAGE = 25.0
#: cgroup v2, then v1: where a container's memory limit is (the JVM's UseContainerSupport).
_CGROUP_MEMORY_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
#: cgroup v1 writes "no limit" as a huge number rather than "max".
_NO_LIMIT = 1 << 60
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DEFAULT_LIBRARY_PATH = ("/usr/java/packages/lib", "/usr/lib64", "/lib64", "/lib", "/usr/lib")


@dataclass(frozen=True, slots=True)
class JarIdentity:
    """What tells one jar file from another without reading its 280 MB: path, size, time."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, jar: Path) -> JarIdentity:
        stat = jar.stat()
        return cls(str(jar.resolve()), stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class StartupCache:
    """A prepared cache directory; either part may be missing (e.g. no libraries for this CPU)."""

    directory: Path

    @property
    def archive(self) -> Path:
        return self.directory / ARCHIVE

    @property
    def nocoops_archive(self) -> Path:
        return self.directory / NOCOOPS_ARCHIVE

    def archive_for(self, compressed_oops: bool) -> Path:
        return self.archive if compressed_oops else self.nocoops_archive

    @property
    def native_dir(self) -> Path:
        return self.directory / NATIVE_DIR

    @property
    def manifest(self) -> Path:
        return self.directory / MANIFEST


def open_startup_cache(directory: Path, jar: Path) -> StartupCache:
    """The cache in ``directory`` if it was prepared for ``jar``; ``StartupCacheError`` if not."""
    cache = StartupCache(directory)
    try:
        recorded = json.loads(cache.manifest.read_text(encoding="utf-8"))["jar"]
        made_for = JarIdentity(recorded["path"], recorded["size"], recorded["mtime_ns"])
    except FileNotFoundError:
        raise StartupCacheError(f"no JVM start-up cache in {directory}") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise StartupCacheError(f"the JVM start-up cache {directory} is unreadable: {err}") from err
    try:
        current = JarIdentity.of(jar)
    except OSError as err:
        raise StartupCacheError(f"cannot read {jar}: {err.strerror}") from err
    if made_for != current:
        raise StartupCacheError(
            f"the JVM start-up cache {directory} was made for another jar "
            f"({made_for.path}, {made_for.size} bytes); prepare it again for {jar}"
        )
    return cache


def startup_options(
    cache: StartupCache,
    java_opts: Sequence[str],
    env: Mapping[str, str],
    *,
    memory: Callable[[], int | None] = lambda: None,
) -> tuple[list[str], list[str]]:
    """The JVM options ``cache`` contributes, and a note for each part left out (and why).

    ``memory()``: the bytes the JVM will size its heap from when ``JAVA_OPTS`` do not say
    (``available_memory``), ``None`` when unknown (then compressed oops are assumed).
    """
    options: list[str] = []
    notes: list[str] = []
    if any(opt.startswith(("-XX:SharedArchiveFile=", "-Xshare:")) for opt in java_opts):
        notes.append("JAVA_OPTS chooses class data sharing itself: the cached archive is not used")
    else:
        coops = compressed_oops(java_opts, memory)
        archive = cache.archive_for(coops)
        if archive.is_file():
            options.append(f"-XX:SharedArchiveFile={archive}")
        else:
            notes.append(f"no cached archive for {'' if coops else 'no '}compressed oops")
    if any(opt.startswith("-Djava.library.path=") for opt in java_opts):
        notes.append("JAVA_OPTS sets java.library.path: the cached libraries are not used")
    elif cache.native_dir.is_dir():
        options.append("-Djava.library.path=" + library_path(cache.native_dir, env))
    return options, notes


def cached_startup_options(
    directory: Path | None,
    *,
    explicit: bool,
    jar: Path,
    java_opts: Sequence[str],
    env: Mapping[str, str],
) -> list[str]:
    """What ``run`` adds to the JVM's options from the cache, each decision logged once."""
    if directory is None:
        log.info("JVM start-up cache off (H2O_JVM_STARTUP_CACHE)")
        return []
    try:
        cache = open_startup_cache(directory, jar)
    except StartupCacheError as err:
        # A missing cache costs seconds of start-up, not correctness: H2O starts without it.
        level = logging.WARNING if explicit or _exists(directory) else logging.INFO
        log.log(
            level, "%s; H2O starts without it (prepare one: h2o-k8s-discovery prepare-jvm)", err
        )
        return []
    options, notes = startup_options(
        cache, java_opts, env, memory=lambda: available_memory(java_opts)
    )
    for note in notes:
        log.info("%s", note)
    log.info(
        "JVM start-up cache %s: %s",
        directory,
        " ".join(options) or "nothing to add",
        extra={"event": "startup_cache", "options": options},
    )
    return options


def compressed_oops(
    java_opts: Sequence[str], memory: Callable[[], int | None] = lambda: None
) -> bool:
    """Whether the JVM started with ``java_opts`` will use compressed oops, as the JVM decides.

    An explicit ``-XX:+/-UseCompressedOops`` wins; otherwise the heap must stay below 32 GB. The
    heap is ``-Xmx`` when given, else ``MaxRAMPercentage`` (25 by default) of ``-XX:MaxRAM`` or of
    ``memory()``. Near the 32 GB line a wrong guess only means the JVM skips the archive.
    """
    switched: bool | None = None
    heap: int | None = None
    ram: int | None = None
    percentage = _DEFAULT_MAX_RAM_PERCENTAGE
    for opt in java_opts:  # the last occurrence of an option wins, as in the JVM
        if opt in ("-XX:-UseCompressedOops", "-XX:+UseCompressedOops"):
            switched = opt == "-XX:+UseCompressedOops"
        elif (size := _heap_bytes(opt)) is not None:
            heap = size
        elif (size := _size_option(opt, "-XX:MaxRAM=")) is not None:
            ram = size
        elif opt.startswith("-XX:MaxRAMPercentage="):
            with contextlib.suppress(ValueError):
                percentage = float(opt.partition("=")[2])
    if heap is None:
        ram = ram if ram is not None else memory()
        heap = None if ram is None else int(ram * percentage / 100)
    fits = heap is None or heap < _COMPRESSED_OOPS_LIMIT
    return fits and switched is not False


def available_memory(java_opts: Sequence[str] = ()) -> int | None:
    """What the JVM sizes its heap from: the container's memory limit, else the machine's RAM
    (always the machine's with ``-XX:-UseContainerSupport``)."""
    support = [
        o for o in java_opts if o in ("-XX:-UseContainerSupport", "-XX:+UseContainerSupport")
    ]
    if support and support[-1] == "-XX:-UseContainerSupport":
        return _physical_memory()
    for limit_file in _CGROUP_MEMORY_LIMITS:
        try:
            raw = Path(limit_file).read_text(encoding="ascii").strip()
        except OSError:
            continue
        if raw.isdecimal() and int(raw) < _NO_LIMIT:
            return min(int(raw), _physical_memory() or int(raw))
    return _physical_memory()


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def _size_option(opt: str, prefix: str) -> int | None:
    match = _SIZE.fullmatch(opt.removeprefix(prefix)) if opt.startswith(prefix) else None
    return None if match is None else int(match[1]) * _UNITS[match[2].lower()]


def _heap_bytes(opt: str) -> int | None:
    heap = _size_option(opt, "-Xmx")
    return heap if heap is not None else _size_option(opt, "-XX:MaxHeapSize=")


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a path the kernel refuses outright (too long, say) is not there
        return False


def library_path(first: Path, env: Mapping[str, str]) -> str:
    """``first``, then what the JVM would have searched anyway ($LD_LIBRARY_PATH, its default)."""
    inherited = [part for part in env.get("LD_LIBRARY_PATH", "").split(":") if part]
    return ":".join([str(first), *inherited, *_DEFAULT_LIBRARY_PATH])
