"""``run`` as a container's PID 1, in a real PID namespace, with a stand-in ``java``.

The stand-in (tests/support/children/java.py, shared with the reliability suite) records
how it was started and which signals reached it, so these tests check the entrypoint's side of
the contract: exit statuses passed on, signals forwarded to the JVM's process group, orphans
reaped, the grace period enforced, and clear 126/127 failures. The real JVM is covered by the
end-to-end tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from k8s_sim.net import free_port
from tests.support.dns_server import DnsServer, ThreadedDnsServer

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: unshare --pid makes a PID namespace"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) from util-linux"),
]

SERVICE = "h2o-service.pid1.svc.cluster.local"
#: The stand-in ``java`` shared with the reliability suite (see its docstring for the modes).
STAND_IN_JAVA = Path(__file__).parent / "support" / "children" / "java.py"
REPO = Path(__file__).resolve().parent.parent
UNSHARE = shutil.which("unshare") or "unshare"


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class Pid1:
    """One ``run`` entrypoint started as PID 1 of a new PID namespace."""

    process: subprocess.Popen[str]
    evidence: Path

    def entrypoint_pid(self) -> int:
        """The host pid of the namespace's PID 1 (the child ``unshare --fork`` made)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        wait_for(lambda: children.read_text().split() != [], 10, "unshare's child")
        return int(children.read_text().split()[0])

    def signal(self, signum: signal.Signals) -> None:
        os.kill(self.entrypoint_pid(), signum)

    def wait(self, seconds: float = 20) -> tuple[int, str]:
        out, _ = self.process.communicate(timeout=seconds)
        return self.process.returncode, out

    def java_started(self) -> bool:
        return (self.evidence / "argv.json").exists()

    def signals(self, record: str = "signals") -> list[str]:
        """The signals the stand-in (or its grandchild: ``grandchild-signals``) has seen."""
        path = self.evidence / record
        return path.read_text().split() if path.exists() else []

    def java_argv(self) -> dict[str, object]:
        data: dict[str, object] = json.loads((self.evidence / "argv.json").read_text())
        return data


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    with ThreadedDnsServer("127.0.0.1") as server:
        server.set_records(SERVICE, a=["127.0.0.1"])
        yield server


@pytest.fixture
def java_dir(tmp_path: Path) -> Path:
    """A PATH directory whose ``java`` is the stand-in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = bin_dir / "java"
    java.write_text(f'#!/bin/sh\nexec {sys.executable} {STAND_IN_JAVA} "$@"\n')
    java.chmod(0o755)
    return bin_dir


@pytest.fixture
def start(dns: DnsServer, java_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Pid1]]:
    started: list[Pid1] = []

    def launch(mode: str = "exit:0", path: str | None = None, **env: str) -> Pid1:
        evidence = tmp_path / "evidence"
        evidence.mkdir(exist_ok=True)
        jar = tmp_path / "h2o.jar"
        jar.write_bytes(b"stand-in")
        full_env = {
            "PATH": path if path is not None else f"{java_dir}:{os.environ['PATH']}",
            "PYTHONPATH": str(REPO),
            "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
            "H2O_DNS_NAMESERVER": f"{dns.host}:{dns.port}",
            "H2O_NODE_EXPECTED_COUNT": "1",
            "H2O_KUBERNETES_API_PORT": str(free_port()),
            "H2O_JAR": str(jar),
            "H2O_FLATFILE": str(tmp_path / "flatfile"),
            "POD_IP": "127.0.0.1",
            # The stand-in java reads no flatfile pipe: the JVM starts after the lookup.
            "H2O_JVM_EARLY_START": "false",
            "H2O_SHUTDOWN_GRACE": "1",
            "STAND_IN_MODE": mode,
            "STAND_IN_DIR": str(evidence),
            **env,
        }
        process = subprocess.Popen(
            [
                UNSHARE,
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
                sys.executable,
                "-m",
                "h2o_k8s_discovery",
                "run",
                "--",
                "-extra",
                "arg",
            ],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(Pid1(process, evidence))
        return started[-1]

    yield launch
    for pid1 in started:
        if pid1.process.poll() is None:
            pid1.process.kill()
            pid1.process.communicate(timeout=10)


@pytest.mark.parametrize("code", [0, 3, 42, 255])
def test_exit_status_passes_through(start: Callable[..., Pid1], code: int) -> None:
    """The JVM's exit code is the container's exit code."""
    status, out = start(f"exit:{code}").wait()
    assert status == code, out


@pytest.mark.parametrize(("name", "status"), [("SIGKILL", 137), ("SIGSEGV", 139)])
def test_death_by_signal_is_128_plus_n(start: Callable[..., Pid1], name: str, status: int) -> None:
    """A JVM killed by signal n makes the entrypoint exit with 128 + n."""
    code, out = start(f"self-kill:{name}").wait()
    assert code == status, out


def test_jvm_command_line_and_environment(start: Callable[..., Pid1], tmp_path: Path) -> None:
    """java gets -jar, -flatfile, -port, -ip and the extra args; no H2O Kubernetes variable."""
    pid1 = start("exit:0", JAVA_OPTS="-Xmx1g -Dx=y", H2O_CLOUD_NAME="c1")
    status, out = pid1.wait()
    assert status == 0, out
    called = pid1.java_argv()
    flatfile = tmp_path / "flatfile"
    assert called["argv"] == [
        str(STAND_IN_JAVA),
        "-Xmx1g",
        "-Dx=y",
        "-jar",
        str(tmp_path / "h2o.jar"),
        "-flatfile",
        str(flatfile),
        "-port",
        "54321",
        "-ip",
        "127.0.0.1",
        "-name",
        "c1",
        "-extra",
        "arg",
    ]
    env = called["env"]
    assert isinstance(env, dict)
    assert not [key for key in env if key.startswith(("H2O_KUBERNETES", "H2O_NODE_"))]
    assert flatfile.read_text() == "127.0.0.1:54321\n"


def test_sigterm_is_forwarded_and_status_kept(start: Callable[..., Pid1]) -> None:
    """SIGTERM reaches the JVM, which stops cleanly; its status 0 is the container's."""
    pid1 = start("clean")
    wait_for((pid1.evidence / "ready").exists, 20, "the stand-in JVM")
    pid1.signal(signal.SIGTERM)
    status, out = pid1.wait()
    assert status == 0, out
    assert pid1.signals() == ["SIGTERM"]


def test_entrypoint_maps_no_openssl(start: Callable[..., Pid1]) -> None:
    """The running entrypoint never loaded libssl: it carries what it loads for the pod's life."""
    pid1 = start("clean")
    wait_for((pid1.evidence / "ready").exists, 20, "the stand-in JVM")
    maps = Path(f"/proc/{pid1.entrypoint_pid()}/maps").read_text()
    pid1.signal(signal.SIGTERM)
    status, out = pid1.wait()
    assert status == 0, out
    assert "python" in maps  # the entrypoint's own map, not unshare's
    assert "libssl" not in maps


def test_other_signals_reach_the_whole_group(start: Callable[..., Pid1]) -> None:
    """HUP, USR1 and USR2 go to the JVM's process group: its own children get them too."""
    pid1 = start("group")
    for ready in ("ready", "grandchild-ready"):
        wait_for((pid1.evidence / ready).exists, 20, ready)
    for signum in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        pid1.signal(signum)
        for record in ("signals", "grandchild-signals"):

            def seen(record: str = record, name: str = signum.name) -> bool:
                return name in pid1.signals(record)

            wait_for(seen, 5, f"{record}: {signum.name}")
    pid1.signal(signal.SIGTERM)
    status, out = pid1.wait()
    assert status == 143, out  # the stand-in's own 128 + 15, passed on
    assert pid1.signals("grandchild-signals")[-1] == "SIGTERM"


def test_stubborn_jvm_is_killed_after_grace(start: Callable[..., Pid1]) -> None:
    """A JVM that ignores SIGTERM is killed when the grace time is up: status 137."""
    pid1 = start("stubborn", H2O_SHUTDOWN_GRACE="1")
    wait_for((pid1.evidence / "ready").exists, 20, "the stand-in JVM")
    sent = time.monotonic()
    pid1.signal(signal.SIGTERM)
    status, out = pid1.wait()
    took = time.monotonic() - sent
    assert status == 137, out
    assert 1.0 <= took < 5.0


def test_orphans_are_reaped(start: Callable[..., Pid1]) -> None:
    """An orphan reparented to PID 1 is reaped: the stand-in sees no zombie and exits 0."""
    status, out = start("orphans").wait()
    assert status == 0, out


def test_signal_during_lookup_starts_nothing(start: Callable[..., Pid1], dns: DnsServer) -> None:
    """A SIGTERM while the lookup waits ends it at once with 143; java never starts."""
    pid1 = start("exit:0", H2O_NODE_EXPECTED_COUNT="2")
    wait_for(lambda: len(dns.questions()) > 0, 20, "the first DNS query")
    pid1.signal(signal.SIGTERM)
    status, out = pid1.wait()
    assert status == 143, out
    assert not pid1.java_started()
    assert "Traceback" not in out


def test_java_not_found_is_127(start: Callable[..., Pid1]) -> None:
    """Without java on PATH the entrypoint says so and exits 127."""
    status, out = start("exit:0", path="/nonexistent").wait()
    assert status == 127
    assert "'java'" in out
    assert "Traceback" not in out


def test_java_not_executable_is_126(start: Callable[..., Pid1], java_dir: Path) -> None:
    """A java that cannot be executed gives 126 and a message naming it."""
    (java_dir / "java").chmod(0o644)
    # Alone on PATH: a PATH search skips a non-executable match and would find the real java.
    status, out = start("exit:0", path=str(java_dir)).wait()
    assert status == 126
    assert "'java'" in out


def test_missing_jar_is_127(start: Callable[..., Pid1], tmp_path: Path) -> None:
    """A jar that does not exist gives 127 and names H2O_JAR; java is not started."""
    pid1 = start("exit:0", H2O_JAR=str(tmp_path / "missing.jar"))
    status, out = pid1.wait()
    assert status == 127
    assert "H2O_JAR" in out
    assert not pid1.java_started()
