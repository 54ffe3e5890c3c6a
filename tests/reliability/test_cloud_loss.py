"""Cloud loss on evidence, on simulated pods with the real jar and a locked cloud.

Each test forms a cloud of three real H2O JVMs in network namespaces, discovered through a real
DNS server, with a manifest's env and arguments; then locks it as users do, by uploading a
frame with H2O's own Python client (``tests/support/h2o_client.py``). The faults are
real: SIGSTOP and SIGCONT of a JVM (a stop-the-world pause: its kernel still completes TCP
handshakes, its HTTP is silent), SIGKILL of a JVM (its port refuses connections), and a new JVM
at a dead member's address. Restarting containers is simulated by starting the entrypoint
again.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from h2o_k8s_discovery import exit_codes
from k8s_sim.pods import Pod, requires_root
from tests.support.cluster import SimulatedCluster, simulated_pods
from tests.support.h2o_client import run_client
from tests.support.kubelet import get_json

pytestmark = [pytest.mark.slow, pytest.mark.root, requires_root, pytest.mark.timeout(420)]

OURS = "h2o-cluster.yaml"
SEED = "h2o-compatible.yaml"
FORMATION = 150.0
#: What ``h2o_client.py`` reports for its frame of 0..999.
FRAME_SEEN = {"rows": 1000, "sum": 499500}
PAUSE = 5.0
SIGKILL_STATUS = 128 + signal.SIGKILL


class Cloud(SimulatedCluster):
    def start_all(self, **overrides: str) -> None:
        self.dns.set_records(self.service, a=[pod.ip for pod in self.pods])
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
        pids = self.java_pids(pod)
        assert len(pids) == 1, f"{pod.name} runs java as {pids}"
        return pids[0]

    def client(self, action: str, pod: Pod, frame: str) -> dict[str, Any]:
        """Run H2O's Python client against ``pod``'s H2O; what it reports about ``frame``."""
        return run_client(action, f"http://{pod.ip}:54321", frame, home=pod.workdir)

    def running(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is None]


@pytest.fixture
def cloud(request: pytest.FixtureRequest) -> Iterator[Cloud]:
    with simulated_pods(getattr(request, "param", OURS)) as (network, dns, pods, manifest):
        yield Cloud(network, dns, pods, manifest, extra_env={"H2O_JVM_STARTUP_CACHE": "off"})


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
