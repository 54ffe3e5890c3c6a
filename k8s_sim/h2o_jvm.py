"""One bare H2O JVM on loopback, for tests and benchmarks that need H2O itself and no pods.

``BareH2O`` starts ``java [options] -jar h2o.jar`` alone (its flatfile lists only itself, its web
server binds 127.0.0.1) with its own temp and ice directories, waits for its REST API and stops
it. ``record_cds_archive`` makes the class-data-sharing archive the project once shipped (and no
longer ships: it kills clouds), so that tests and ``bench/jvm_start.py`` can show why.
"""

from __future__ import annotations

import http.client
import json
import secrets
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from k8s_sim.net import free_port_pair

_POLL = 0.2


class BareH2O:
    """A single H2O node on 127.0.0.1; a context manager that kills it on exit."""

    def __init__(self, jar: Path, workdir: Path, options: Sequence[str] = ()) -> None:
        self.jar = jar
        self.workdir = workdir
        self.options = list(options)
        self.port = free_port_pair()
        self.log = workdir / "h2o.log"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        flatfile = self.workdir / "flatfile"
        flatfile.write_text(f"127.0.0.1:{self.port}\n", encoding="ascii")
        return [
            "java",
            "-Xmx512m",
            *self.options,
            f"-Djava.io.tmpdir={self.workdir / 'tmp'}",
            "-jar",
            str(self.jar),
            "-ip",
            "127.0.0.1",
            "-web_ip",
            "127.0.0.1",
            "-port",
            str(self.port),
            "-flatfile",
            str(flatfile),
            "-name",
            f"bare-{secrets.token_hex(4)}",
            "-ice_root",
            str(self.workdir / "ice"),
        ]

    def __enter__(self) -> Self:
        (self.workdir / "tmp").mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
            )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop(signal.SIGKILL)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, signum: signal.Signals = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until ``/3/Cloud`` answers 200; ``RuntimeError`` (with the log) if H2O dies first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"H2O exited before its REST API answered:\n{self.log_tail()}")
            if self.request("GET", "/3/Cloud?skip_ticks=true")[0] == 200:
                return
            time.sleep(_POLL)
        raise RuntimeError(f"H2O's REST API did not answer in {timeout:g}s:\n{self.log_tail()}")

    def request(
        self, method: str, path: str, body: str | None = None, timeout: float = 30.0
    ) -> tuple[int | None, bytes]:
        """One HTTP request; ``(None, b"")`` when the node does not answer."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            return None, b""
        finally:
            connection.close()

    def json(self, path: str) -> Any:
        status, body = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
        return json.loads(body)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, characters: int = 3000) -> str:
        return self.log_text()[-characters:]


def record_cds_archive(jar: Path, workdir: Path, options: Sequence[str] = ()) -> Path:
    """A dynamic CDS archive recorded from one idle start of H2O, stopped once its API answers:
    what ``prepare-jvm`` used to ship."""
    archive = workdir / "h2o.jsa"
    recording = BareH2O(
        jar, workdir / "recording", [*options, f"-XX:ArchiveClassesAtExit={archive}"]
    )
    with recording:
        recording.wait_ready()
        recording.stop(signal.SIGTERM)
    if not archive.is_file():
        raise RuntimeError(f"H2O wrote no archive:\n{recording.log_tail()}")
    return archive
