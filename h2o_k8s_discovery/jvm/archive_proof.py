"""Writing and proving the class archive (``class_archive``): a build step, never run in a pod.

Two idle starts of H2O alone on loopback, each read for its route table: the first records the
classes it loads, ``java -Xshare:dump`` writes them into an archive, the second runs on the
archive with ``-Xshare:on``. The archive is kept only when both tables are the same. The
non-obvious decision: the proof uses H2O's own answer (``/3/Metadata/endpoints``) rather than a
reflection probe of our own, because a probe loads classes in its own order and so proves
nothing about the order a real start gives them; the route table is what H2O built.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from h2o_k8s_discovery.errors import StartupCacheError
from h2o_k8s_discovery.jvm.class_archive import ARCHIVE_FILE

CLASS_LIST_FILE = "classes.lst"
#: One route's binding as H2O reports it: HTTP method, URL pattern, handler class and method,
#: input schema, output schema.
Binding = tuple[str, str, str, str, str, str]
#: H2O's REST route table, one route per entry.
ROUTES_PATH = "/3/Metadata/endpoints"
#: The heap of the two H2O starts of a preparation: enough for an idle node.
_HEAP = "-Xmx1g"
_START_TIMEOUT = 300.0
_DUMP_TIMEOUT = 600.0
_POLL = 0.2


def write_class_archive(
    jar: Path, directory: Path, *, java: str, jvm_options: Sequence[str]
) -> tuple[Path, int]:
    """Record, write and prove an archive for ``jar`` in ``directory``; the archive's path and
    the number of routes proven. ``StartupCacheError`` when any step fails or a route differs."""
    class_list = directory / CLASS_LIST_FILE
    archive = directory / ARCHIVE_FILE
    expected = h2o_routes(
        jar, directory / "recording", java, [*jvm_options, f"-XX:DumpLoadedClassList={class_list}"]
    )
    dump_archive(jar, class_list, archive, java)
    # -Xshare:on: a start that cannot map the archive fails instead of proving nothing.
    archived = h2o_routes(
        jar,
        directory / "proof",
        java,
        [*jvm_options, "-Xshare:on", f"-XX:SharedArchiveFile={archive}"],
    )
    compare_routes(expected, archived)
    return archive, len(expected)


def compare_routes(expected: Sequence[Binding], archived: Sequence[Binding]) -> None:
    """``StartupCacheError`` naming the first route the archive binds otherwise."""
    differ = sorted(set(expected) ^ set(archived))
    if differ:
        route = differ[0]
        raise StartupCacheError(
            f"with the class archive H2O binds {len(differ)} route(s) otherwise, e.g. "
            f"{route[0]} {route[1]} to {route[2]}.{route[3]}({route[4]}); the archive is not kept"
        )


def dump_archive(jar: Path, class_list: Path, archive: Path, java: str) -> None:
    """``java -Xshare:dump`` of ``class_list`` into ``archive``, on the jar's real path."""
    command = [
        java,
        "-Xshare:dump",
        f"-XX:SharedClassListFile={class_list}",
        f"-XX:SharedArchiveFile={archive}",
        "-cp",
        os.path.realpath(jar),
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_DUMP_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise StartupCacheError(f"cannot write the class archive: {err}") from err
    if done.returncode != 0 or not archive.is_file():
        tail = (done.stdout + done.stderr)[-1500:]
        raise StartupCacheError(f"java -Xshare:dump exited with status {done.returncode}:\n{tail}")


def h2o_routes(jar: Path, workdir: Path, java: str, options: Sequence[str]) -> list[Binding]:
    """Start H2O alone on loopback with ``options``, read its route table, stop it."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port_pair()
    command = [
        java,
        *options,
        _HEAP,
        f"-Djava.io.tmpdir={workdir}",
        "-jar",
        os.path.realpath(jar),
        "-ip",
        "127.0.0.1",
        "-port",
        str(port),
        "-name",
        f"prepare-jvm-{secrets.token_hex(4)}",
        "-ice_root",
        str(workdir),
    ]
    log_path = workdir / "h2o.log"
    with _running(command, log_path) as process:
        body = _wait_for_routes(process, port, log_path)
    return parse_routes(body)


def parse_routes(body: bytes) -> list[Binding]:
    """The bindings in a ``/3/Metadata/endpoints`` answer; ``StartupCacheError`` if it has none."""
    try:
        routes = json.loads(body)["routes"]
        bindings = [
            (
                str(route["http_method"]),
                str(route["url_pattern"]),
                str(route["handler_class"]),
                str(route["handler_method"]),
                str(route["input_schema"]),
                str(route["output_schema"]),
            )
            for route in routes
        ]
    except (ValueError, KeyError, TypeError) as err:
        raise StartupCacheError(f"H2O's route table is unreadable: {err!r}") from err
    if not bindings:
        raise StartupCacheError("H2O reported no routes")
    return bindings


def free_port_pair() -> int:
    """A loopback port P with P+1 free too (H2O takes both), as far as can be known now."""
    for _attempt in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise StartupCacheError("found no two adjacent free loopback ports")


@contextlib.contextmanager
def _running(command: Sequence[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    try:
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
    except OSError as err:
        raise StartupCacheError(f"cannot start {command[0]}: {err.strerror}") from err
    try:
        yield process
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    # SIGTERM: the JVM's exit writes what -XX:DumpLoadedClassList still buffers.
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_for_routes(process: subprocess.Popen[bytes], port: int, log_path: Path) -> bytes:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartupCacheError(
                f"H2O exited with status {process.returncode} before answering: "
                f"{_first_fatal(log_path) or _tail(log_path)}"
            )
        body = _get(port, ROUTES_PATH)
        if body is not None:
            return body
        time.sleep(_POLL)
    raise StartupCacheError(
        f"H2O did not answer {ROUTES_PATH} within {_START_TIMEOUT:.0f} s:\n{_tail(log_path)}"
    )


def _get(port: int, path: str) -> bytes | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    return body if response.status == 200 else None


def _first_fatal(path: Path) -> str | None:
    """H2O's first FATAL line (``H2O.fail``'s reason), which a stack trace would bury."""
    try:
        with path.open(errors="replace") as log:
            return next((line.strip() for line in log if " FATAL " in line), None)
    except OSError:
        return None


def _tail(path: Path, characters: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-characters:]
    except OSError:
        return "(no log)"
