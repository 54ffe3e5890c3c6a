"""Hostile and heavy HTTP traffic against a pod's probe server, with a real entrypoint process.

The pod runs ``run`` with the stand-in JVM trapping signals, so it stays in phase "forming"
and its readiness answer is 200. Requests are raw bytes on raw sockets, so nothing is
normalised on the way; memory and file descriptors are read from /proc of the entrypoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.reliability.conftest import Launch
from tests.support.dns_server import ThreadedDnsServer
from tests.support.paths import CHILDREN, PYTHONPATH
from tests.support.reliability import (
    LEADER_PATH,
    SERVICE,
    UNSHARE,
    Pod,
    PodFactory,
    free_port,
    open_fds,
    proc_status_kib,
    requires_root,
    requires_unshare,
    wait_for,
    write_java,
)

MEMORY_LIMIT_KIB = 100 * 1024
PROBE = f"GET {LEADER_PATH} HTTP/1.1\r\nHost: pod\r\n\r\n".encode()

MALFORMED = {
    "garbage": b"\x00\xff\xfe garbage\r\n\r\n",
    "binary": bytes(range(256)),
    "bad-version": b"GET /healthz HTTP/9.9\r\nHost: pod\r\n\r\n",
    "bad-header": b"GET /healthz HTTP/1.1\r\nHost: pod\r\nBad Header\r\n\r\n",
    "control-char": b"GET /healthz HTTP/1.1\r\nHost: pod\r\nX: a\x01b\r\n\r\n",
    "negative-length": b"GET /healthz HTTP/1.1\r\nHost: pod\r\nContent-Length: -1\r\n\r\n",
    "smuggling": b"GET /healthz HTTP/1.1\r\nHost: pod\r\nContent-Length: 3\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "non-ascii-path": "GET /ü HTTP/1.1\r\nHost: pod\r\n\r\n".encode(),
    "no-host": b"GET /healthz HTTP/1.1\r\n\r\n",
}
HUGE = {
    "100KB-header": b"GET /healthz HTTP/1.1\r\nHost: pod\r\nX: " + b"a" * 100_000 + b"\r\n\r\n",
    "5000-headers": b"GET /healthz HTTP/1.1\r\nHost: pod\r\n"
    + b"".join(b"X-%d: 0123456789\r\n" % i for i in range(5000))
    + b"\r\n",
    "100KB-url": b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: pod\r\n\r\n",
    "100MB-body-announced": b"POST /healthz HTTP/1.1\r\nHost: pod\r\n"
    b"Content-Length: 100000000\r\n\r\n" + b"x" * 1000,
}


@pytest.fixture(scope="module")
def forming_pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    """One pod in phase "forming", shared by the tests that only look at answers."""
    with ThreadedDnsServer("127.0.0.1") as server:
        server.set_records(SERVICE, a=["127.0.0.1"])
        factory = PodFactory(server, tmp_path_factory.mktemp("forming"))
        try:
            pod = factory.start("trap")
            pod.wait_phase("forming")
            yield pod
        finally:
            factory.close()


def raw_exchange(port: int, payload: bytes, timeout: float = 2.0) -> bytes:
    """Send ``payload`` on a new connection; return the first bytes of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(ConnectionError):
            sock.sendall(payload)
        try:
            return sock.recv(4096)
        except (ConnectionError, TimeoutError):
            return b""


def status_code(answer: bytes) -> int | None:
    first = answer.split(b"\r\n", 1)[0].split()
    return int(first[1]) if len(first) >= 2 and first[1].isdigit() else None


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_gets_400(forming_pod: Pod, payload: bytes) -> None:
    """A malformed request gets 400 and the server goes on answering the kubelet's probe."""
    assert status_code(raw_exchange(forming_pod.api_port, payload)) == 400
    assert forming_pod.probe() == 200
    assert forming_pod.process.poll() is None


@pytest.mark.parametrize("payload", HUGE.values(), ids=HUGE.keys())
def test_huge_request_gets_4xx(forming_pod: Pod, payload: bytes) -> None:
    """A 100 KB header, 5000 headers, a 100 KB URL or a 100 MB body: 4xx, and still serving."""
    code = status_code(raw_exchange(forming_pod.api_port, payload))
    assert code is not None
    assert 400 <= code < 500
    assert forming_pod.probe() == 200


def test_malformed_requests_leave_no_traceback_in_the_log(launch: Launch) -> None:
    """Garbage on the probe port (a port scan, a TLS probe) puts no traceback in the pod's log."""
    pod = launch("trap")
    pod.wait_phase("forming")
    for payload in (MALFORMED["bad-header"], HUGE["100KB-header"]):
        assert status_code(raw_exchange(pod.api_port, payload)) == 400
    assert pod.probe() == 200
    log = pod.log()
    assert "Traceback" not in log
    assert '"level": "error"' not in log


async def hold_connections(port: int, count: int) -> list[asyncio.StreamWriter]:
    """Open ``count`` keep-alive connections, 100 at a time, each answered once (200)."""
    writers: list[asyncio.StreamWriter] = []
    readers: list[asyncio.StreamReader] = []
    for start in range(0, count, 100):
        opened = await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", port) for _ in range(min(100, count - start)))
        )
        for reader, writer in opened:
            writer.write(PROBE)
            readers.append(reader)
            writers.append(writer)
    lines = await asyncio.gather(*(reader.readline() for reader in readers))
    assert {line.split()[1] for line in lines} == {b"200"}
    return writers


async def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


async def kubelet_probe(port: int) -> tuple[int | None, float]:
    """The kubelet's probe: a new connection, one GET, a 1 s timeout; (code, seconds)."""
    started = time.monotonic()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(1.0):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(PROBE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            line = await reader.readline()
    except (TimeoutError, OSError):
        return None, time.monotonic() - started
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return int(line.split()[1]), time.monotonic() - started


def settle_fds(pod: Pod, baseline: int) -> None:
    """Every connection the test opened is closed on the server side too, within 5 s."""
    wait_for(lambda: open_fds(pod.pid()) <= baseline + 2, 5, "the connections to be closed")


async def test_thousand_concurrent_connections(launch: Launch) -> None:
    """1000 open connections: every answer right, the kubelet's probe fast, RSS under 100 MB."""
    pod = launch("trap")
    pod.wait_phase("forming")
    baseline = open_fds(pod.pid())
    writers = await hold_connections(pod.api_port, 1000)
    try:
        code, took = await kubelet_probe(pod.api_port)
        assert code == 200
        assert took < 1.0
        assert open_fds(pod.pid()) >= 1000  # all held open at once
        assert proc_status_kib(pod.pid(), "VmRSS") < MEMORY_LIMIT_KIB
    finally:
        await close_all(writers)
    settle_fds(pod, baseline)
    assert pod.probe() == 200


async def test_slowloris_connections(launch: Launch) -> None:
    """200 requests dribbled a header at a time: the kubelet's probe still answers within 1 s."""
    pod = launch("trap")
    pod.wait_phase("forming")
    baseline = open_fds(pod.pid())
    opened = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", pod.api_port) for _ in range(200))
    )
    writers = [writer for _, writer in opened]
    try:
        for writer in writers:
            writer.write(b"GET /kubernetes/isLeaderNode HTTP/1.1\r\nHost: pod\r\n")
        for round_number in range(10):  # ten slow rounds, one header line per socket each
            for writer in writers:
                writer.write(b"X-Slow-%d: %s\r\n" % (round_number, b"z" * 100))
            code, took = await kubelet_probe(pod.api_port)
            assert code == 200, f"round {round_number}: {pod.status()}\n{pod.log()[-3000:]}"
            assert took < 1.0
            await asyncio.sleep(0.3)  # the attacker's pace, not a synchronisation
        assert proc_status_kib(pod.pid(), "VmRSS") < MEMORY_LIMIT_KIB
    finally:
        await close_all(writers)
    settle_fds(pod, baseline)


def limit_open_files(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return preexec


async def test_idle_connections_cannot_starve_the_probe(launch: Launch) -> None:
    """Idle connections up to the fd limit are dropped in time for the probe to be answered."""
    pod = launch("trap", preexec_fn=limit_open_files(128))
    pod.wait_phase("forming")
    idle = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", pod.api_port) for _ in range(160)),
        return_exceptions=True,
    )
    writers = [pair[1] for pair in idle if isinstance(pair, tuple)]
    try:
        deadline = time.monotonic() + 10
        answered = None
        while time.monotonic() < deadline and answered is None:
            answered, _ = await kubelet_probe(pod.api_port)
        assert answered == 200
    finally:
        await close_all(writers)


@pytest.mark.parametrize("holder", ["0.0.0.0", "127.0.0.1", "::"])
def test_probe_port_in_use_is_75(launch: Launch, holder: str) -> None:
    """Another process listening on the probe port: exit 75 naming it; no JVM, no flatfile."""
    family = socket.AF_INET6 if ":" in holder else socket.AF_INET
    port = free_port()
    with socket.socket(family) as taken:
        taken.bind((holder, port))
        taken.listen()
        pod = launch("exit:0", env={"H2O_KUBERNETES_API_PORT": str(port)})
        assert pod.wait() == 75, pod.log()
    assert f"the probe port {port} (H2O_KUBERNETES_API_PORT) is already in use" in pod.log()
    assert not pod.java_started()
    assert not pod.flatfile.exists()
    pod.assert_clean_exit()


@pytest.mark.root
@requires_root
def test_privileged_probe_port_without_privilege_is_75(launch: Launch) -> None:
    """As uid 65534, a probe port below 1024: exit 75 with the kernel's reason; no JVM."""
    first = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if first == 0:
        pytest.skip("every port is unprivileged here (ip_unprivileged_port_start=0)")
    pod = launch("exit:0", env={"H2O_KUBERNETES_API_PORT": str(first - 1)}, unprivileged=True)
    assert pod.wait() == 75, pod.log()
    assert f"cannot serve probes on port {first - 1}" in pod.log()
    assert "permission denied" in pod.log().lower()
    assert not pod.java_started()
    pod.assert_clean_exit()


@pytest.mark.root
@requires_root
@requires_unshare
def test_ipv6_disabled_in_the_pod(tmp_path: Path) -> None:
    """In a pod network with IPv6 switched off the probes are served on IPv4 all the same."""
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    java = write_java(tmp_path / "bin")
    jar = tmp_path / "h2o.jar"
    jar.write_bytes(b"stand-in jar")
    api_port = 8080  # the namespace is ours alone: H2O's default port is free there
    env = {
        "PATH": f"{java.parent}:{os.environ['PATH']}",
        "PYTHONPATH": PYTHONPATH,
        "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
        "H2O_NODE_EXPECTED_COUNT": "1",
        "H2O_KUBERNETES_API_PORT": str(api_port),
        "H2O_JAR": str(jar),
        "H2O_FLATFILE": str(tmp_path / "flatfile"),
        "POD_IP": "127.0.0.1",
        # The stand-in java reads no flatfile pipe: the JVM starts after the lookup.
        "H2O_JVM_EARLY_START": "false",
        "STAND_IN_MODE": "trap",
        "STAND_IN_DIR": str(evidence),
    }
    report, log = tmp_path / "report.json", tmp_path / "entrypoint.log"
    command = [UNSHARE or "unshare", "--net", sys.executable, str(CHILDREN / "in_net_ns.py")]
    command += ["--service", SERVICE, "--api-port", str(api_port)]
    command += ["--report", str(report), "--log", str(log), "--"]
    command += [sys.executable, "-m", "h2o_k8s_discovery", "run"]
    done = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(report.read_text())
    assert outcome["probe"] == 200, log.read_text()
    assert outcome["status"] == 143  # the stand-in JVM's status after the forwarded SIGTERM
    assert "Traceback" not in log.read_text()
