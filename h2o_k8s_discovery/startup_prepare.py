"""Building the JVM start-up cache (``h2o-k8s-discovery prepare-jvm``); see ``startup_cache``.

The non-obvious decision: the class archive is recorded from a real start of the very jar the
pods run, alone on loopback, stopped with SIGTERM once its REST API answers, because the JVM
writes a dynamic archive (``-XX:ArchiveClassesAtExit``) only as it exits, and only what that run
loaded is in it. The result is checked with ``-Xshare:on`` (which fails instead of falling back)
before it replaces the old cache.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from h2o_k8s_discovery.errors import StartupCacheError
from h2o_k8s_discovery.startup_cache import (
    JarIdentity,
    StartupCache,
    library_path,
    open_startup_cache,
)

#: Where H2O's XGBoost extension looks for its libraries inside the jar on x86-64 Linux.
_JAR_NATIVE_PREFIX = "lib/linux_64/"
_TRAINING_HEAP = "512m"
_POLL = 0.2  # seconds between checks of the training JVM


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
    timeout: float = 300.0,
    progress: Callable[[str], None] = lambda _message: None,
) -> StartupCache:
    """Build the cache for ``jar`` in ``directory``, replacing what was there; takes ~10-20 s.

    Everything is built in a sibling directory and renamed into place at the end, so a reader
    never sees half a cache and an interrupted preparation leaves the old one intact.
    """
    if not zipfile.is_zipfile(jar):
        raise StartupCacheError(f"{jar} is not a jar (zip archive)")
    identity = JarIdentity.of(jar)
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StartupCacheError(f"cannot create {directory.parent}: {err.strerror}") from err
    with _scratch_sibling(directory) as work:
        cache = StartupCache(work)
        progress("unpacking native libraries")
        unpacked = extract_native_libraries(jar, cache.native_dir)
        archives: list[str] = []
        for coops in (True, False):
            archive = _record_archive(
                jar, cache, coops, java=java, timeout=timeout, progress=progress
            )
            if archive is not None:
                archives.append(archive.name)
        manifest = {
            "jar": {"path": identity.path, "size": identity.size, "mtime_ns": identity.mtime_ns},
            "java": _java_version(java),
            "native_libraries": unpacked,
            "archives": archives,
        }
        cache.manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _replace_dir(work, directory)
    return StartupCache(directory)


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


def _record_archive(
    jar: Path,
    cache: StartupCache,
    coops: bool,
    *,
    java: str,
    timeout: float,
    progress: Callable[[str], None],
) -> Path | None:
    """Record and check the archive for JVMs with (or without) compressed oops.

    Only the first is required: the second serves heaps of 32 GB or more, and a JDK may lack
    the base archive it builds on (``classes_nocoops.jsa``); then it is left out, with a note.
    """
    archive = cache.archive_for(coops)
    flags = [] if coops else ["-XX:-UseCompressedOops"]
    kind = "compressed oops" if coops else "no compressed oops (heaps of 32 GB or more)"
    progress(f"starting H2O once to record its classes, {kind}")
    try:
        _record_class_archive(jar, cache, archive, flags, java=java, timeout=timeout)
        progress(f"checking the archive, {kind}")
        _check_archive(jar, cache, archive, flags, java=java, timeout=timeout)
    except StartupCacheError as err:
        if coops:
            raise
        progress(f"no archive for {kind}: {str(err).splitlines()[0]}")
        archive.unlink(missing_ok=True)
        for scratch in ("training", "check"):
            shutil.rmtree(cache.directory / scratch, ignore_errors=True)
        return None
    return archive


def _record_class_archive(
    jar: Path,
    cache: StartupCache,
    archive: Path,
    flags: Sequence[str],
    *,
    java: str,
    timeout: float,
) -> None:
    """Start H2O alone on loopback until its REST API answers, then stop it.

    The JVM writes the archive (``-XX:ArchiveClassesAtExit``) while exiting after SIGTERM. The
    node lists only itself in its flatfile and binds loopback only, so it never looks for or
    reaches another node.
    """
    scratch = cache.directory / "training"
    port = _free_port_pair()
    flatfile = scratch / "flatfile"
    (scratch / "tmp").mkdir(parents=True)
    flatfile.write_text(f"127.0.0.1:{port}\n", encoding="ascii")
    jvm_options = [*flags, f"-XX:ArchiveClassesAtExit={archive}", f"-Xmx{_TRAINING_HEAP}"]
    command = [
        *_h2o_command(java, jar, cache, scratch / "tmp", jvm_options),
        "-ip",
        "127.0.0.1",
        "-web_ip",
        "127.0.0.1",
        "-port",
        str(port),
        "-flatfile",
        str(flatfile),
        "-name",
        f"startup-cache-{secrets.token_hex(4)}",
        "-ice_root",
        str(scratch / "ice"),
    ]
    log_path = scratch / "h2o.log"
    with log_path.open("wb") as sink:
        try:
            jvm = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
            )
        except OSError as err:
            raise StartupCacheError(f"cannot start {java}: {err.strerror}") from err
        try:
            _wait_for_rest_api(jvm, port, time.monotonic() + timeout, log_path)
            jvm.send_signal(signal.SIGTERM)
            jvm.wait(timeout)
        finally:
            if jvm.poll() is None:
                jvm.kill()
                jvm.wait()
    if not archive.is_file():
        raise StartupCacheError(f"H2O exited without writing {archive}:\n{_tail(log_path)}")
    shutil.rmtree(scratch)


def _wait_for_rest_api(
    jvm: subprocess.Popen[bytes], port: int, deadline: float, log_path: Path
) -> None:
    while time.monotonic() < deadline:
        if jvm.poll() is not None:
            raise StartupCacheError(
                f"H2O exited with status {jvm.returncode} before its REST API answered:\n"
                f"{_tail(log_path)}"
            )
        if _answers(port, "/3/Cloud?skip_ticks=true"):
            return
        time.sleep(_POLL)
    raise StartupCacheError(f"H2O's REST API did not answer in time:\n{_tail(log_path)}")


def _answers(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == http.HTTPStatus.OK
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _check_archive(
    jar: Path,
    cache: StartupCache,
    archive: Path,
    flags: Sequence[str],
    *,
    java: str,
    timeout: float,
) -> None:
    """``-Xshare:on`` makes the JVM fail, not carry on without, when it cannot use the archive."""
    scratch = cache.directory / "check"
    scratch.mkdir()
    jvm_options = [*flags, "-Xshare:on", f"-XX:SharedArchiveFile={archive}"]
    command = [*_h2o_command(java, jar, cache, scratch, jvm_options), "-version"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise StartupCacheError(f"cannot check the archive: {err}") from err
    if done.returncode != 0:
        raise StartupCacheError(
            f"the JVM refuses the archive it just wrote:\n{(done.stdout + done.stderr)[-2000:]}"
        )
    shutil.rmtree(scratch)


def _h2o_command(
    java: str, jar: Path, cache: StartupCache, tmpdir: Path, jvm_options: Sequence[str]
) -> list[str]:
    """``java [options] -jar JAR`` with the cache's libraries and its own temp directory."""
    return [
        java,
        *jvm_options,
        f"-Djava.io.tmpdir={tmpdir}",
        "-Djava.library.path=" + library_path(cache.native_dir, os.environ),
        "-jar",
        str(jar),
    ]


def _java_version(java: str) -> str:
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = done.stderr.strip().splitlines()
    return lines[0] if lines else "unknown"


def _free_port_pair() -> int:
    """A loopback port P with P + 1 also free (H2O binds both)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise StartupCacheError("no two adjacent free TCP ports on 127.0.0.1")


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


def _tail(path: Path, characters: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-characters:]
    except OSError:
        return "(no log)"
