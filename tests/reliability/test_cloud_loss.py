"""Cloud loss on evidence, on simulated pods with the real jar and a locked cloud.

Each test forms a cloud of three real H2O JVMs in network namespaces, discovered through a real
DNS server, with a manifest's env and arguments; then locks it as users do, by uploading a
frame with H2O's own Python client (``children/h2o_client.py``). The faults are real: SIGSTOP
and SIGCONT of a JVM (a stop-the-world pause: its kernel still completes TCP handshakes, its
HTTP is silent), SIGKILL of a JVM (its port refuses connections), and a new JVM at a dead
member's address. Restarting containers is simulated by starting the entrypoint again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from h2o_k8s_discovery import exit_codes
from h2o_k8s_discovery.dns_server import DnsServer, ThreadedDnsServer
from h2o_k8s_discovery.jar import ensure_h2o_jar
from h2o_k8s_discovery.settings import Settings
from tests.kubelet import Kubelet, get_json
from tests.manifests import Deployment, deployment
from tests.pods import Pod, PodNetwork, requires_root
from tests.reliability.support import CHILDREN, PYTHONPATH

pytestmark = [pytest.mark.slow, pytest.mark.root, requires_root, pytest.mark.timeout(420)]

OURS = "h2o-cluster.yaml"
SEED = "h2o-compatible.yaml"
FORMATION = 150.0
#: What ``h2o_client.py`` reports for its frame of 0..999.
FRAME_SEEN = {"rows": 1000, "sum": 499500}
PAUSE = 5.0
SIGKILL_STATUS = 128 + signal.SIGKILL


@dataclass
class Cloud:
    network: PodNetwork
    dns: DnsServer
    pods: list[Pod]
    manifest: Deployment
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.manifest.pod_env("198.18.0.1"))

    @property
    def api_port(self) -> int:
        return self.settings.probe.api_port

    def kubelet(self) -> Kubelet:
        path, port = self.manifest.probe("readinessProbe") or ("", 0)
        return Kubelet(self.pods, port, path)

    def start(self, pod: Pod, **overrides: str) -> None:
        """The manifest's env and arguments, the per-pod paths moved into the pod's workdir."""
        env = self.manifest.pod_env(pod.ip) | {
            "PATH": os.environ["PATH"],
            "H2O_JAR": str(ensure_h2o_jar(progress=False)),
            "H2O_FLATFILE": str(pod.workdir / "flatfile"),
            "JAVA_OPTS": f"-Xmx512m -Djava.io.tmpdir={pod.tmpdir}",
            "H2O_JVM_STARTUP_CACHE": "off",
            **overrides,
        }
        args = [
            arg.replace("/tmp/", f"{pod.workdir}/") if arg.startswith("/tmp/") else arg
            for arg in self.manifest.args()
        ] or ["-ice_root", str(pod.ice_root)]
        argv = [sys.executable, "-m", "h2o_k8s_discovery", "run", "--", *args]
        self.processes[pod.name] = pod.spawn(argv, env=env, log_path=pod.workdir / "entrypoint.log")

    def start_all(self, **overrides: str) -> None:
        self.dns.set_records(self.settings.lookup.service_dns, a=[pod.ip for pod in self.pods])
        for pod in self.pods:
            self.start(pod, **overrides)

    def wait_leader(self) -> Pod:
        """The pod that answers 200 while the others answer 404, and says it leads."""
        deadline = time.monotonic() + FORMATION
        kubelet = self.kubelet()
        while True:
            sample = kubelet.wait_for_one_leader(deadline)
            leader = self.pods[sample.leader]
            if self.status(leader)["is_leader"] is True:
                return leader
            assert time.monotonic() < deadline, self.logs()
            time.sleep(kubelet.period)

    def status(self, pod: Pod) -> dict[str, Any]:
        return get_json(pod, self.api_port, "/status")

    def h2o_cloud(self, pod: Pod) -> dict[str, Any]:
        return get_json(pod, 54321, "/3/Cloud?skip_ticks=true")

    def java_pid(self, pod: Pod) -> int:
        pids = []
        for pid in pod.pids():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "java":
                    pids.append(pid)
            except FileNotFoundError:
                continue
        assert len(pids) == 1, f"{pod.name} runs java as {pids}"
        return pids[0]

    def client(self, action: str, pod: Pod, frame: str) -> dict[str, Any]:
        """Run H2O's Python client against ``pod``'s H2O; what it reports about ``frame``."""
        argv = [sys.executable, str(CHILDREN / "h2o_client.py"), action]
        argv += [f"http://{pod.ip}:54321", frame]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=180,
            env={"PATH": os.environ["PATH"], "PYTHONPATH": PYTHONPATH, "HOME": str(pod.workdir)},
            check=False,
        )
        assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    def exits(self, since: float, seconds: float) -> dict[str, tuple[int, float]]:
        """Each entrypoint's exit status and when (seconds after ``since``) it was seen."""
        seen: dict[str, tuple[int, float]] = {}
        deadline = time.monotonic() + seconds
        while len(seen) < len(self.processes) and time.monotonic() < deadline:
            for name, process in self.processes.items():
                if name not in seen and (status := process.poll()) is not None:
                    seen[name] = (status, time.monotonic() - since)
            time.sleep(0.02)
        return seen

    def running(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is None]

    def logs(self) -> str:
        parts = []
        for pod in self.pods:
            path = pod.workdir / "entrypoint.log"
            text = path.read_text(errors="replace") if path.exists() else ""
            lines = [line for line in text.splitlines() if "h2o_k8s_discovery" in line]
            parts.append(f"--- {pod.name}\n" + "\n".join(lines[-25:]))
        return "\n".join(parts)

    def stop_all(self) -> dict[str, int | None]:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        grace = self.settings.launch.shutdown_grace + 5
        seen = self.exits(time.monotonic(), grace)
        return {name: seen.get(name, (None, 0.0))[0] for name in self.processes}


@pytest.fixture
def cloud(request: pytest.FixtureRequest) -> Iterator[Cloud]:
    manifest = deployment(getattr(request, "param", OURS))
    with PodNetwork() as network:
        pods = [network.add_pod(f"h2o-{i}") for i in range(manifest.replicas)]
        with ThreadedDnsServer(network.gateway, 53) as dns:
            yield Cloud(network, dns, pods, manifest)


def locked_cloud(cloud: Cloud, **overrides: str) -> Pod:
    """Form the cloud, upload a frame with H2O's client; the leader, once the cloud is locked."""
    cloud.start_all(**overrides)
    leader = cloud.wait_leader()
    assert cloud.client("upload", leader, "kept") == FRAME_SEEN
    assert cloud.h2o_cloud(leader)["locked"] is True
    return leader


def follower_of(cloud: Cloud, leader: Pod) -> Pod:
    return next(pod for pod in cloud.pods if pod is not leader)


@pytest.mark.parametrize("role", ["leader", "follower"])
def test_paused_jvm_keeps_the_locked_cloud(cloud: Cloud, role: str) -> None:
    """A JVM paused 5 s (SIGSTOP, SIGCONT): no pod exits, the same JVMs, the same Ready leader."""
    leader = locked_cloud(cloud)
    paused = leader if role == "leader" else follower_of(cloud, leader)
    jvms = {pod.name: cloud.java_pid(pod) for pod in cloud.pods}
    os.kill(jvms[paused.name], signal.SIGSTOP)
    silences = []
    try:
        resume_at = time.monotonic() + PAUSE
        while time.monotonic() < resume_at:
            assert cloud.running() == list(cloud.processes), cloud.logs()
            status = cloud.status(paused)
            assert status["damage"] is None, status
            silences.append(status["silence"])
            time.sleep(0.25)
    finally:
        os.kill(jvms[paused.name], signal.SIGCONT)
    # The paused pod's own entrypoint saw its node silent, and said so in /status.
    assert any(s and s.startswith("the local H2O node has not answered") for s in silences)
    after = cloud.kubelet()
    assert cloud.pods[after.wait_for_one_leader(time.monotonic() + 60).leader] is leader
    held = after.hold(5.0)
    assert all(sample.one_leader and sample.leader == held[0].leader for sample in held)
    assert {pod.name: cloud.java_pid(pod) for pod in cloud.pods} == jvms
    assert cloud.client("read", leader, "kept") == FRAME_SEEN
    assert all(cloud.status(pod)["damage"] is None for pod in cloud.pods)
    assert cloud.stop_all() == dict.fromkeys(cloud.processes, 143), cloud.logs()


def test_killed_jvm_stops_every_pod(cloud: Cloud) -> None:
    """A follower's JVM killed in a locked cloud: the other pods exit 70 within about 2 s."""
    leader = locked_cloud(cloud)
    killed = follower_of(cloud, leader)
    os.kill(cloud.java_pid(killed), signal.SIGKILL)
    seen = cloud.exits(time.monotonic(), 15.0)
    statuses = {name: status for name, (status, _) in seen.items()}
    expected = dict.fromkeys(cloud.processes, exit_codes.CLOUD_LOST) | {killed.name: SIGKILL_STATUS}
    assert statuses == expected, cloud.logs()
    slowest = max(at for _, at in seen.values())
    assert slowest < 3.0, f"the last pod exited {slowest:.1f}s after the kill"
    leader_log = (leader.workdir / "entrypoint.log").read_text()
    assert f"member(s) lost: {killed.ip}:54321 refused a connection" in leader_log
    assert all(pod.pids() == [] for pod in cloud.pods)


@pytest.mark.parametrize("cloud", [SEED], indirect=True)
def test_seed_manifest_heals_after_a_killed_follower(cloud: Cloud) -> None:
    """H2O's manifest, its env only: a follower's JVM killed, every pod restarts, a clean cloud."""
    leader = locked_cloud(cloud)
    killed = follower_of(cloud, leader)
    old_jvms = {cloud.java_pid(pod) for pod in cloud.pods}
    os.kill(cloud.java_pid(killed), signal.SIGKILL)
    seen = cloud.exits(time.monotonic(), 15.0)
    assert {name: status for name, (status, _) in seen.items()} == dict.fromkeys(
        cloud.processes, exit_codes.CLOUD_LOST
    ) | {killed.name: SIGKILL_STATUS}, cloud.logs()
    # The kubelet restarts every container; a new, full cloud forms and H2O's client works.
    for pod in cloud.pods:
        cloud.start(pod)
    new_leader = cloud.wait_leader()
    h2o_cloud = cloud.h2o_cloud(new_leader)
    assert (h2o_cloud["cloud_size"], h2o_cloud["consensus"]) == (3, True)
    assert old_jvms.isdisjoint(cloud.java_pid(pod) for pod in cloud.pods)
    assert cloud.client("upload", new_leader, "fresh") == FRAME_SEEN
    assert cloud.client("read", new_leader, "fresh") == FRAME_SEEN
    assert cloud.stop_all() == dict.fromkeys(cloud.processes, 143), cloud.logs()


def test_rejoined_member_keeps_the_leader_unready(cloud: Cloud) -> None:
    """Exit-on-loss off: a killed follower's new JVM rejoins; the leader never answers 200 again."""
    leader = locked_cloud(cloud, H2O_EXIT_ON_CLOUD_LOSS="false")
    killed = follower_of(cloud, leader)
    os.kill(cloud.java_pid(killed), signal.SIGKILL)
    assert cloud.processes[killed.name].wait(timeout=15) == SIGKILL_STATUS
    lost = f"member(s) lost: {killed.ip}:54321 refused a connection"
    wait_until(cloud, lambda: cloud.status(leader)["damage"] is not None, 5.0)
    assert cloud.status(leader)["damage"].startswith(lost)
    # The kubelet restarts the dead follower's container: a new JVM at the same address.
    cloud.start(killed, H2O_EXIT_ON_CLOUD_LOSS="false")
    wait_until(cloud, lambda: _phase(cloud, killed) == "formed", FORMATION)
    h2o_cloud = cloud.h2o_cloud(leader)
    assert (h2o_cloud["cloud_size"], h2o_cloud["cloud_healthy"]) == (3, True), h2o_cloud
    kubelet = cloud.kubelet()
    for sample in kubelet.hold(10.0):
        assert 200 not in sample.codes, sample.codes
    status = cloud.status(leader)
    assert status["damage"].startswith(lost)
    assert status["ready"] == 503
    assert set(cloud.stop_all().values()) == {143}, cloud.logs()


def wait_until(cloud: Cloud, condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, cloud.logs()
        time.sleep(0.1)


def _phase(cloud: Cloud, pod: Pod) -> str | None:
    """The entrypoint's phase, ``None`` while its probe server does not answer yet."""
    answer = pod.http_get(cloud.api_port, "/status")
    return None if answer is None or answer[0] != 200 else str(json.loads(answer[1])["phase"])
