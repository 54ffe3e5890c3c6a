"""What the reliability tests share: a pod's entrypoint as a real process, and ways to look at it.

A ``Pod`` is one ``h2o-k8s-discovery run`` started the way a container starts it (optionally as
PID 1 of a new PID namespace, optionally as an unprivileged user), with the stand-in ``java``
of ``children/java.py`` on its PATH. Everything a test checks is read from outside: the exit
status, the log, the HTTP answers, /proc (memory, file descriptors, leftover processes) and
the stand-in's evidence files. Waiting is always a polled condition with a deadline.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from h2o_k8s_discovery import exit_codes
from tests.support.dns_server import DnsServer
from tests.support.paths import CHILDREN, PYTHONPATH

STAND_IN_JAVA = CHILDREN / "java.py"
SERVICE = "h2o-service.reliability.svc.cluster.local"
LEADER_PATH = "/kubernetes/isLeaderNode"
UNSHARE = shutil.which("unshare")
SETPRIV = shutil.which("setpriv")
NOBODY = 65534

#: Every status the entrypoint itself may decide (the JVM's own statuses come on top).
DEFINED_STATUSES = frozenset(
    value for name, value in vars(exit_codes).items() if name.isupper() and isinstance(value, int)
)

requires_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: PID and mount namespaces, setpriv, read-only mounts"
)
requires_unshare = pytest.mark.skipif(UNSHARE is None, reason="needs unshare(1) from util-linux")
root_only = [pytest.mark.root, requires_root, requires_unshare]


def free_port() -> int:
    """A TCP port free on every IPv4 and IPv6 address right now."""
    with socket.socket(socket.AF_INET6) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_pair() -> int:
    """A port P with P + 1 free too (H2O binds both), found in a bounded number of tries."""
    for _ in range(50):
        port = free_port()
        if port < 65535:
            with socket.socket(socket.AF_INET6) as sock:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                try:
                    sock.bind(("::", port + 1))
                except OSError:
                    continue
                return port
    raise AssertionError("no two consecutive free ports found")


def wait_for(condition: Callable[[], object], seconds: float, what: str) -> None:
    """Poll ``condition`` every 20 ms until it is truthy; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.02)


def http_get(
    port: int, path: str, *, timeout: float = 1.0, host: str = "127.0.0.1"
) -> tuple[int, bytes] | None:
    """One GET on a fresh connection: (status, body), or None when nothing answered in time."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def status_of(port: int) -> dict[str, Any] | None:
    """The entrypoint's ``/status`` JSON, or None while it does not answer."""
    answer = http_get(port, "/status")
    if answer is None or answer[0] != 200:
        return None
    body: dict[str, Any] = json.loads(answer[1])
    return body


def proc_status_kib(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/<pid>/status, e.g. VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    raise KeyError(key)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            found += [int(child) for child in text.split()]
    return found


def processes_with(marker: str) -> list[int]:
    """Host pids of the running processes whose environment holds ``marker``."""
    needle = marker.encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in Path(f"/proc/{name}/environ").read_bytes():
                found.append(int(name))
    return found


def kill_all(pids: Sequence[int]) -> None:
    """SIGKILL the given processes (ones this test started), ignoring those already gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def listening_on(port: int) -> bool:
    """True when some socket listens on TCP ``port`` (IPv4 or IPv6), from /proc/net."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


@cache
def unprivileged_python() -> tuple[str, str] | None:
    """(interpreter, PYTHONPATH) with which uid 65534 can import the package, or None."""
    if SETPRIV is None or os.geteuid() != 0:
        return None
    pythonpath = PYTHONPATH
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys.executable, os.path.realpath(sys.executable), shutil.which(version)]
    for candidate in dict.fromkeys(c for c in candidates if c):
        probe = subprocess.run(
            [*as_nobody(), candidate, "-c", "import aiohttp, dns, tenacity, h2o_k8s_discovery"],
            env={"PYTHONPATH": pythonpath, "PATH": os.environ["PATH"]},
            cwd="/",
            capture_output=True,
            check=False,
            timeout=30,
        )
        if probe.returncode == 0:
            return candidate, pythonpath
    return None


def as_nobody() -> list[str]:
    return [SETPRIV or "setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]


def write_java(bin_dir: Path, python: str = sys.executable) -> Path:
    """Put the stand-in ``java`` into ``bin_dir``; returns its path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    java = bin_dir / "java"
    java.write_text(f'#!/bin/sh\nexec {python} {STAND_IN_JAVA} "$@"\n')
    java.chmod(0o755)
    return java


@dataclass
class Pod:
    """One ``run`` entrypoint started as a container would start it, and its evidence."""

    process: subprocess.Popen[bytes]
    workdir: Path
    evidence: Path
    log_path: Path
    api_port: int
    flatfile: Path
    pid_namespace: bool
    started_at: float = field(default_factory=time.monotonic)

    def pid(self) -> int:
        """Host pid of the entrypoint (in a PID namespace: unshare's child, its PID 1)."""
        if not self.pid_namespace:
            return self.process.pid
        wait_for(lambda: children_of(self.process.pid), 10, "unshare's child")
        return children_of(self.process.pid)[0]

    def signal(self, signum: signal.Signals) -> None:
        os.kill(self.pid(), signum)

    def wait(self, seconds: float = 20) -> int:
        """The exit status; fails the test when the entrypoint outlives ``seconds``."""
        try:
            return self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {seconds} s:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def status(self) -> dict[str, Any] | None:
        return status_of(self.api_port)

    def phase(self) -> str | None:
        status = self.status()
        return None if status is None else str(status["phase"])

    def wait_phase(self, phase: str, seconds: float = 20) -> None:
        wait_for(lambda: self.phase() == phase, seconds, f"phase {phase}:\n{self.log()}")

    def probe(self, path: str = LEADER_PATH, timeout: float = 1.0) -> int | None:
        answer = http_get(self.api_port, path, timeout=timeout)
        return None if answer is None else answer[0]

    def java_started(self) -> bool:
        return (self.evidence / "started").exists()

    def java_ready(self) -> bool:
        return (self.evidence / "ready").exists()

    def java_signals(self) -> list[str]:
        record = self.evidence / "signals"
        return record.read_text().split() if record.exists() else []

    def leftovers(self) -> list[int]:
        """Processes still carrying this pod's marker (its environment names the evidence)."""
        return processes_with(str(self.evidence))

    def assert_clean_exit(self) -> None:
        """No traceback in the log and, once it has exited, no process of this pod left."""
        log = self.log()
        assert "Traceback" not in log, log
        wait_for(lambda: not self.leftovers(), 5, f"every process of the pod to be gone:\n{log}")


class PodFactory:
    """Starts pods against ``dns``, under ``root``; ``close`` kills whatever is left of them."""

    def __init__(self, dns: DnsServer, root: Path) -> None:
        self.dns = dns
        self.root = root
        self.pods: list[Pod] = []
        self.shared: list[Path] = []

    def start(
        self,
        mode: str = "trap",
        *,
        env: Mapping[str, str] | None = None,
        unset: Sequence[str] = (),
        args: Sequence[str] = (),
        pid_namespace: bool = False,
        unprivileged: bool = False,
        path: str | None = None,
        preexec_fn: Callable[[], None] | None = None,
        jar_mode: int = 0o644,
        output: int | None = None,
    ) -> Pod:
        """One ``run`` entrypoint; ``mode`` is the stand-in JVM's (see children/java.py).

        ``output``: a file descriptor for its stdout and stderr instead of the log file;
        ``unset``: variables left out of its environment (defaults of this factory included).
        """
        python = sys.executable
        pythonpath = PYTHONPATH
        if unprivileged:
            found = unprivileged_python()
            if found is None:
                pytest.skip("no Python interpreter that uid 65534 can run with this venv")
            python, pythonpath = found
            # pytest's own tmp_path is private to root: the unprivileged pod needs its own.
            workdir = Path(tempfile.mkdtemp(prefix="h2o-reliability-"))
            workdir.chmod(0o755)
            self.shared.append(workdir)
        else:
            workdir = self.root / f"pod-{len(self.pods)}"
            workdir.mkdir()
        evidence = workdir / "evidence"
        flatfile_dir = workdir / "flatfile"
        for directory in (evidence, flatfile_dir):
            directory.mkdir()
            if unprivileged:
                os.chown(directory, NOBODY, NOBODY)
        java_dir = workdir / "bin"
        write_java(java_dir, python)
        jar = workdir / "h2o.jar"
        jar.write_bytes(b"stand-in jar")
        jar.chmod(jar_mode)
        api_port = free_port()
        full_env = {
            "PATH": path if path is not None else f"{java_dir}:{os.environ['PATH']}",
            "PYTHONPATH": pythonpath,
            "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
            "H2O_DNS_NAMESERVER": f"{self.dns.host}:{self.dns.port}",
            "H2O_NODE_EXPECTED_COUNT": "1",
            "H2O_DNS_POLL_INTERVAL": "0.1",
            "H2O_KUBERNETES_API_PORT": str(api_port),
            "H2O_JAR": str(jar),
            "H2O_FLATFILE": str(flatfile_dir / "flatfile"),
            "POD_IP": "127.0.0.1",
            # The stand-in java reads no flatfile pipe: the JVM starts after the lookup.
            "H2O_JVM_EARLY_START": "false",
            "H2O_SHUTDOWN_GRACE": "2",
            "STAND_IN_MODE": mode,
            "STAND_IN_DIR": str(evidence),
            **(env or {}),
        }
        for name in unset:
            full_env.pop(name, None)
        command = [python, "-m", "h2o_k8s_discovery", "run", "--", *args]
        if unprivileged:
            command = [*as_nobody(), *command]
        if pid_namespace:
            unshare = [UNSHARE or "unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
            command = [*unshare, *command]
        log_path = workdir / "entrypoint.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                env=full_env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log if output is None else output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec_fn,  # noqa: PLW1509 - only setrlimit, before exec
            )
        pod = Pod(
            process=process,
            workdir=workdir,
            evidence=evidence,
            log_path=log_path,
            api_port=int(full_env["H2O_KUBERNETES_API_PORT"]),
            flatfile=Path(full_env["H2O_FLATFILE"]),
            pid_namespace=pid_namespace,
        )
        self.pods.append(pod)
        return pod

    def close(self) -> None:
        for pod in self.pods:
            if pod.process.poll() is None:
                pod.process.kill()
                pod.process.wait(timeout=10)
            kill_all(pod.leftovers())
        for workdir in self.shared:
            shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Sidecar:
    """One ``sidecar`` process beside a stand-in JVM that serves a formed ``/3/Cloud``."""

    process: subprocess.Popen[bytes]
    jvm: subprocess.Popen[bytes]
    log_path: Path
    api_port: int

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def status(self) -> dict[str, Any] | None:
        return status_of(self.api_port)

    def wait_phase(self, phase: str, seconds: float = 20) -> None:
        wait_for(
            lambda: (self.status() or {}).get("phase") == phase,
            seconds,
            f"phase {phase}:\n{self.log()}",
        )

    def close(self) -> None:
        for process in (self.process, self.jvm):
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


def start_sidecar(workdir: Path, env: Mapping[str, str] | None = None) -> Sidecar:
    """``python -m h2o_k8s_discovery sidecar`` as the sidecar layout runs it: the flatfile is
    already written (by ``discover --write`` in a real pod) and the stand-in JVM, started
    beside it as the stock image starts H2O, serves a formed cloud of this one node."""
    h2o_port, api_port = free_port_pair(), free_port()
    evidence = workdir / "evidence"
    evidence.mkdir(parents=True)
    flatfile = workdir / "flatfile"
    flatfile.write_text(f"127.0.0.1:{h2o_port}\n")
    java = [sys.executable, str(STAND_IN_JAVA), "-flatfile", str(flatfile)]
    jvm = subprocess.Popen(
        [*java, "-port", str(h2o_port), "-ip", "127.0.0.1"],
        env={
            "PATH": os.environ["PATH"],
            "STAND_IN_MODE": "cloud+trap",
            "STAND_IN_DIR": str(evidence),
        },
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log_path = workdir / "sidecar.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "h2o_k8s_discovery", "sidecar"],
            env={
                "PATH": os.environ["PATH"],
                "PYTHONPATH": PYTHONPATH,
                "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
                "H2O_KUBERNETES_API_PORT": str(api_port),
                "H2O_PORT": str(h2o_port),
                "H2O_FLATFILE": str(flatfile),
                "POD_IP": "127.0.0.1",
                **(env or {}),
            },
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Sidecar(process=process, jvm=jvm, log_path=log_path, api_port=api_port)
