"""Building the JVM start-up cache (``h2o-k8s-discovery prepare-jvm``); see ``startup_cache``.

The non-obvious decision: the cache is built in a sibling directory and renamed into place at
the end, so a reader never sees half a cache and an interrupted preparation leaves the old one
intact. It holds the jar's own native libraries, a class archive that H2O has proven route by
route (``class_archive``; a failed proof leaves the libraries only) and a manifest naming the jar
by its content (``jar_identity``).
"""

from __future__ import annotations

import contextlib
import platform
import secrets
import shutil
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from h2o_k8s_discovery.errors import StartupCacheError
from h2o_k8s_discovery.jvm.archive_proof import write_class_archive
from h2o_k8s_discovery.jvm.class_archive import ArchivedJar
from h2o_k8s_discovery.jvm.startup_cache import (
    ArchiveRecord,
    StartupCache,
    identify_jar,
    library_path,
    manifest_for,
    open_startup_cache,
)

#: Where H2O's XGBoost extension looks for its libraries inside the jar on x86-64 Linux.
_JAR_NATIVE_PREFIX = "lib/linux_64/"


def ensure_startup_cache(
    jar: Path, directory: Path, *, progress: Callable[[str], None] = lambda _message: None
) -> StartupCache:
    """The cache in ``directory`` if it was made for ``jar``, else a freshly prepared one."""
    try:
        return open_startup_cache(directory, jar)
    except StartupCacheError:
        return prepare_startup_cache(jar, directory, progress=progress)


def prepare_startup_cache(
    jar: Path,
    directory: Path,
    *,
    java: str = "java",
    progress: Callable[[str], None] = lambda _message: None,
) -> StartupCache:
    """Build the cache for ``jar`` in ``directory``, replacing what was there; takes two idle
    starts of H2O and an archive dump (~15 s on two cores)."""
    identity = identify_jar(jar)
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StartupCacheError(f"cannot create {directory.parent}: {err.strerror}") from err
    with _scratch_sibling(directory) as work:
        cache = StartupCache(work)
        progress("unpacking native libraries")
        try:
            unpacked = extract_native_libraries(jar, cache.native_dir)
        except OSError as err:
            raise StartupCacheError(f"cannot write the cache in {work}: {err}") from err
        progress("recording, writing and proving the class archive")
        archive = _class_archive(jar, cache, java, progress)
        try:
            text = manifest_for(identity, _java_version(java), unpacked, archive)
            cache.manifest.write_text(text, encoding="utf-8")
        except OSError as err:
            raise StartupCacheError(f"cannot write the cache in {work}: {err}") from err
        _replace_dir(work, directory)
    # What the manifest just recorded: reading it back would hash the jar a second time.
    return StartupCache(directory, archive.jar)


def _class_archive(
    jar: Path, cache: StartupCache, java: str, progress: Callable[[str], None]
) -> ArchiveRecord:
    """The proven archive's record, or why there is none: H2O starts without one, only slower."""
    libraries = ["-Djava.library.path=" + library_path(cache.native_dir, {})]
    scratch = cache.directory / "scratch"
    try:
        archived_jar = ArchivedJar.of(jar)
        archive, routes = write_class_archive(jar, scratch, java=java, jvm_options=libraries)
        archive.rename(cache.class_archive)
    except (StartupCacheError, OSError) as err:
        progress(f"no class archive: {err}")
        return ArchiveRecord(None, missing_because=str(err).splitlines()[0])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    progress(f"class archive proven: H2O binds all {routes} REST routes as without it")
    return ArchiveRecord(archived_jar, routes_proven=routes)


def extract_native_libraries(jar: Path, target: Path) -> list[str]:
    """Unpack the jar's x86-64 Linux libraries into ``target``; none on other machines."""
    target.mkdir(parents=True, exist_ok=True)
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        # The jar only carries x86-64 Linux libraries; elsewhere H2O finds none either way.
        return []
    names: list[str] = []
    with zipfile.ZipFile(jar) as archive:
        for member in archive.infolist():
            name = member.filename.removeprefix(_JAR_NATIVE_PREFIX)
            if member.filename == name or member.is_dir() or "/" in name or not name:
                continue
            with archive.open(member) as source, (target / name).open("wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
            names.append(name)
    return sorted(names)


def _java_version(java: str) -> str:
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = done.stderr.strip().splitlines()
    return lines[0] if lines else "unknown"


@contextlib.contextmanager
def _scratch_sibling(directory: Path) -> Iterator[Path]:
    work = directory.with_name(f".{directory.name}.{secrets.token_hex(4)}")
    try:
        work.mkdir()
    except OSError as err:
        raise StartupCacheError(f"cannot write in {directory.parent}: {err.strerror}") from err
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _replace_dir(new: Path, directory: Path) -> None:
    old = directory.with_name(f".{directory.name}.old-{secrets.token_hex(4)}")
    with contextlib.suppress(FileNotFoundError):
        directory.rename(old)
    new.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
