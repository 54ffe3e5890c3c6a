"""H2O's own Python client doing real work on clouds we start: simulated pods with our manifest's
env and the shipped start-up cache, and ``demo``. After every step the cloud must be whole."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from h2o_k8s_discovery.config.settings import default_startup_cache
from h2o_k8s_discovery.jvm.jar import ensure_h2o_jar
from h2o_k8s_discovery.jvm.startup_prepare import ensure_startup_cache
from k8s_sim.manifests import deployment
from k8s_sim.net import free_port_run
from k8s_sim.pods import PodNetwork, requires_root
from tests.support.dns_server import ThreadedDnsServer
from tests.support.h2o_client import client_session
from tests.support.kubelet import get_json
from tests.test_e2e_pods import Cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

README = Path(__file__).resolve().parent.parent / "README.md"
FORMATION_DEADLINE = 150.0


def assert_whole(urls: list[str], processes: list[subprocess.Popen[bytes]], logs: str) -> None:
    """Every process alive, every node reports the full cloud, no FATAL line from H2O."""
    dead = [p.args for p in processes if p.poll() is not None]
    assert not dead, f"exited: {dead}\n{logs[-3000:]}"
    for url in urls:
        # Plain http URLs built here, never a user's input.
        cloud_url = f"{url}/3/Cloud?skip_ticks=true"
        with urllib.request.urlopen(cloud_url, timeout=10) as answer:  # noqa: S310
            cloud = json.load(answer)
        assert cloud["cloud_size"] == len(urls), cloud
        assert cloud["cloud_healthy"] is True, cloud
    assert " FATAL " not in logs, logs[logs.index(" FATAL ") - 2000 :][:4000]


# --- simulated pods, our manifest ---------------------------------------------------------------


@pytest.fixture
def pods_cluster() -> Iterator[Cluster]:
    jar = ensure_h2o_jar(progress=False)
    ensure_startup_cache(jar, default_startup_cache(jar))  # the cache as the image ships it
    manifest = deployment("h2o-cluster.yaml")
    with PodNetwork() as network:
        pods = [network.add_pod(f"h2o-{i}") for i in range(manifest.replicas)]
        with ThreadedDnsServer(network.gateway, 53) as dns:
            yield Cluster(network=network, dns=dns, pods=pods, manifest=manifest)


def entrypoint_logs(cluster: Cluster) -> str:
    """Everything the pods printed: the entrypoints' JSON lines and H2O's own output."""
    logs = (pod.workdir / "entrypoint.log" for pod in cluster.pods)
    return "".join(log.read_text(errors="replace") for log in logs if log.exists())


@requires_root
@pytest.mark.root
def test_client_session_on_pods_started_by_run(pods_cluster: Cluster) -> None:
    """Connect, upload a frame split over all three nodes, train GBM and GLM, predict, read
    metrics, remove, end the session: the cloud started by ``run`` with our manifest's env and
    the start-up cache stays whole after every step."""
    cluster = pods_cluster
    cluster.publish(cluster.pods)
    processes = cluster.start_entrypoints()
    first = cluster.kubelet().wait_for_one_leader(time.monotonic() + FORMATION_DEADLINE)
    leader = cluster.pods[first.leader]
    urls = [f"http://{pod.ip}:54321" for pod in cluster.pods]
    assert "-Djava.library.path=" in entrypoint_logs(cluster), "start-up cache not used"
    assert "-XX:SharedArchiveFile=" in entrypoint_logs(cluster), "class archive not used"

    def check(step: str) -> None:
        assert_whole(urls, processes, entrypoint_logs(cluster))
        status = get_json(leader, cluster.api_port, "/status")
        assert status["damage"] is None, (step, status)

    client_session(f"http://{leader.ip}:54321", check, nodes=3)


# --- demo ---------------------------------------------------------------------------------------


class RunningDemo:
    """``h2o-k8s-discovery demo`` as a user runs it, until it says the cluster is up."""

    def __init__(self, tmp_path: Path) -> None:
        self.h2o_port, self.api_port = free_port_run(6), free_port_run(3)
        self.out = tmp_path / "demo.out"
        with self.out.open("wb") as sink:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "h2o_k8s_discovery",
                    "demo",
                    "--h2o-port",
                    str(self.h2o_port),
                    "--api-port",
                    str(self.api_port),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 240.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := re.search(pattern, self.text()):
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} in the demo's output:\n{self.text()[-4000:]}")

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.h2o_port + 2 * i}" for i in range(3)]

    def pod_logs(self) -> str:
        root = self.wait_for(r"logs in (\S+)").group(1)
        return "".join(p.read_text(errors="replace") for p in sorted(Path(root).glob("*/pod.log")))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@pytest.fixture
def running_demo(tmp_path: Path) -> Iterator[RunningDemo]:
    demo = RunningDemo(tmp_path)
    try:
        demo.wait_for("cluster is up")
        yield demo
    finally:
        demo.stop()


def test_client_session_on_the_demo(running_demo: RunningDemo) -> None:
    """The same client session on ``make demo``'s cluster: whole after every step, and the demo
    still running at the end."""
    demo = running_demo
    url = demo.wait_for(r'h2o\.connect\(url="(http://127\.0\.0\.1:\d+)"\)').group(1)

    def check(step: str) -> None:
        assert_whole(demo.urls, [demo.process], demo.pod_logs())

    client_session(url, check, nodes=3)
    assert demo.stop() == 0
    assert "Traceback" not in demo.text()


def test_the_readme_lines_work_on_the_demo(running_demo: RunningDemo) -> None:
    """The README's Python lines, run as a program of their own against the demo, train a model
    and end their session at exit without harming the cloud."""
    url = running_demo.wait_for(r'h2o\.connect\(url="(http://127\.0\.0\.1:\d+)"\)').group(1)
    block = re.search(r"```python\n(import h2o\n.*?)```", README.read_text(), re.DOTALL)
    assert block is not None, "no h2o example in the README"
    program = block.group(1).replace("http://127.0.0.1:54321", url)
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"H2O session \S+ closed", done.stdout), done.stdout
    assert_whole(running_demo.urls, [running_demo.process], running_demo.pod_logs())


def test_the_demo_stops_when_a_pod_dies(running_demo: RunningDemo) -> None:
    """A pod's JVM killed: the demo names the pod and its status, stops the others and exits
    non-zero instead of saying the cluster is up."""
    demo = running_demo
    root = demo.wait_for(r"logs in (\S+)").group(1)
    victim = _jvm_pid_of(Path(root) / "h2o-1")
    os.kill(victim, signal.SIGKILL)
    assert demo.process.wait(60) == 1
    out = demo.text()
    assert "h2o-1 exited with status 137 (its H2O JVM was killed by SIGKILL)" in out, out
    assert "stopping 2 pods" in out, out
    assert "Traceback" not in out


def _jvm_pid_of(workdir: Path) -> int:
    """The java process whose command line names ``workdir`` (its ice root)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"java") and any(str(workdir).encode() in a for a in argv):
            return int(entry.name)
    raise AssertionError(f"no JVM of {workdir}")
