"""Formation safety on simulated pods with the real jar: never two clouds, fail loudly.

The pods take docker/kubernetes/h2o-cluster.yaml's environment (readiness 503 until the cloud
has formed, so "Ready" means "the leader"), with the changes each scenario names.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from h2o_k8s_discovery.dns_server import DnsServer, ThreadedDnsServer
from h2o_k8s_discovery.jar import ensure_h2o_jar
from h2o_k8s_discovery.settings import Settings
from tests.kubelet import Kubelet, Sample, get_json
from tests.manifests import Deployment, deployment
from tests.pods import Pod, PodNetwork, requires_root

pytestmark = [pytest.mark.slow, pytest.mark.root, requires_root, pytest.mark.timeout(420)]

MANIFEST = "h2o-cluster.yaml"
LOOKUP_FAILED = 69
CLOUD_LOST = 70


@dataclass
class Scenario:
    network: PodNetwork
    dns: DnsServer
    pods: list[Pod]
    manifest: Deployment
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.manifest.pod_env("198.18.0.1"))

    def kubelet(self) -> Kubelet:
        path, port = self.manifest.probe("readinessProbe") or ("", 0)
        return Kubelet(self.pods, port, path)

    def publish(self, ips: list[str], server: DnsServer | None = None) -> None:
        (server or self.dns).set_records(self.settings.lookup.service_dns, a=ips)

    def start(self, pod: Pod, **overrides: str) -> subprocess.Popen[bytes]:
        env = self.manifest.pod_env(pod.ip) | {
            "PATH": os.environ["PATH"],
            "H2O_JAR": str(ensure_h2o_jar(progress=False)),
            "H2O_FLATFILE": str(pod.workdir / "flatfile"),
            "JAVA_OPTS": f"-Xmx512m -Djava.io.tmpdir={pod.tmpdir}",
            **overrides,
        }
        argv = [sys.executable, "-m", "h2o_k8s_discovery", "run", "--"]
        argv += ["-ice_root", str(pod.ice_root)]
        process = pod.spawn(argv, env=env, log_path=pod.workdir / "entrypoint.log")
        self.processes[pod.name] = process
        return process

    def log(self, pod: Pod) -> str:
        path = pod.workdir / "entrypoint.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def java_pids(self, pod: Pod) -> list[int]:
        pids = []
        for pid in pod.pids():
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except FileNotFoundError:
                continue
            if comm == "java":
                pids.append(pid)
        return pids

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            process.wait(timeout=self.settings.launch.shutdown_grace + 5)


@pytest.fixture
def scenario() -> Iterator[Scenario]:
    manifest = deployment(MANIFEST)
    with PodNetwork() as network:
        pods = [network.add_pod(f"h2o-{i}") for i in range(manifest.replicas)]
        with ThreadedDnsServer(network.gateway, 53) as dns:
            yield Scenario(network, dns, pods, manifest)


def never_two_ready(samples: list[Sample]) -> None:
    for sample in samples:
        assert sample.codes.count(200) <= 1, f"two Ready pods at once: {sample.codes}"


def wait_leader_watching(scenario: Scenario, kubelet: Kubelet, seconds: float) -> Sample:
    """Sample until one leader, asserting on every sample that no two pods are Ready."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sample = kubelet.sample()
        never_two_ready([sample])
        if sample.one_leader:
            return sample
        time.sleep(kubelet.period)
    logs = "\n".join(scenario.log(pod)[-3000:] for pod in scenario.pods)
    raise AssertionError(f"no single leader; last {kubelet.samples[-1].codes}\n{logs}")


def test_split_view_forms_one_cloud(scenario: Scenario) -> None:
    """Pod 2's record reaches pod 0's resolver 10 s late: one cloud of 3, never two Ready pods."""
    ips = [pod.ip for pod in scenario.pods]
    scenario.publish(ips)
    with ThreadedDnsServer(scenario.network.gateway, 5353) as lagging:
        scenario.publish(ips[:2], lagging)
        started = time.monotonic()
        scenario.start(scenario.pods[0], H2O_DNS_NAMESERVER=f"{lagging.host}:{lagging.port}")
        for pod in scenario.pods[1:]:
            scenario.start(pod)
        kubelet = scenario.kubelet()
        while time.monotonic() < started + 10:
            never_two_ready([kubelet.sample()])
            time.sleep(kubelet.period)
        # Nobody may have given H2O a partial view in the meantime (an early-started JVM waits
        # on a pipe at that path; a regular file is there only once its peers are handed over).
        assert not any((pod.workdir / "flatfile").is_file() for pod in scenario.pods)
        scenario.publish(ips, lagging)
        first = wait_leader_watching(scenario, kubelet, 150)
    never_two_ready(kubelet.hold(5.0))
    cloud = get_json(scenario.pods[first.leader], 54321, "/3/Cloud?skip_ticks=true")
    assert cloud["cloud_size"] == 3
    assert "all 3 peers agree" in scenario.log(scenario.pods[1])
    scenario.stop_all()


def test_fail_closed_starts_no_jvm(scenario: Scenario) -> None:
    """Two of three pods published, fail-closed: every entrypoint exits 69, no JVM is left."""
    scenario.publish([pod.ip for pod in scenario.pods[:2]])
    fail_closed = {"H2O_NODE_LOOKUP_TIMEOUT": "3", "H2O_NODE_LOOKUP_FAIL_ON_TIMEOUT": "true"}
    processes = [scenario.start(pod, **fail_closed) for pod in scenario.pods]
    assert [p.wait(timeout=30) for p in processes] == [LOOKUP_FAILED] * 3
    for pod in scenario.pods:
        assert pod.pids() == []
        assert not (pod.workdir / "flatfile").exists()
        assert "2 peer(s) published instead of the 3 expected" in scenario.log(pod)


def test_stale_record_is_waited_out(scenario: Scenario) -> None:
    """A stale fourth record that goes away after 5 s: one cloud of exactly the 3 pods."""
    ips = [pod.ip for pod in scenario.pods]
    stale = str(scenario.network.subnet.network_address + 99)
    scenario.publish([*ips, stale])
    started = time.monotonic()
    for pod in scenario.pods:
        scenario.start(pod)
    kubelet = scenario.kubelet()
    while time.monotonic() < started + 5:
        never_two_ready([kubelet.sample()])
        time.sleep(kubelet.period)
    assert "1 more than the 3 expected" in scenario.log(scenario.pods[0])
    scenario.publish(ips)
    first = wait_leader_watching(scenario, kubelet, 150)
    cloud = get_json(scenario.pods[first.leader], 54321, "/3/Cloud?skip_ticks=true")
    assert sorted(node["ip_port"] for node in cloud["nodes"]) == sorted(f"{ip}:54321" for ip in ips)
    scenario.stop_all()


def test_lost_member_turns_leader_unready(scenario: Scenario) -> None:
    """A follower's JVM killed after formation: the leader answers 503 within 2 s, then exits 70."""
    scenario.publish([pod.ip for pod in scenario.pods])
    for pod in scenario.pods:
        scenario.start(pod, H2O_EXIT_ON_CLOUD_LOSS="true")
    kubelet = scenario.kubelet()
    first = wait_leader_watching(scenario, kubelet, 150)
    leader = scenario.pods[first.leader]
    follower = scenario.pods[(first.leader + 1) % 3]
    (java,) = scenario.java_pids(follower)
    os.kill(java, signal.SIGKILL)
    killed = time.monotonic()
    path, port = scenario.manifest.probe("readinessProbe") or ("", 0)
    while (answer := leader.http_get(port, path)) is not None and answer[0] == 200:
        assert time.monotonic() - killed < 2.0, "the leader stayed Ready with a member gone"
        time.sleep(0.05)
    leader_process = scenario.processes[leader.name]
    assert leader_process.wait(timeout=scenario.settings.launch.shutdown_grace + 10) == CLOUD_LOST
    assert f"member(s) lost: {follower.ip}:54321 refused a connection" in scenario.log(leader)
    assert "H2O cannot heal a damaged cloud" in scenario.log(leader)
    scenario.stop_all()
