"""Formation safety on simulated pods with the real jar: never two clouds, fail loudly.

The pods take docker/kubernetes/h2o-cluster.yaml's environment (readiness 503 until the cloud
has formed, so "Ready" means "the leader"), with the changes each scenario names.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from k8s_sim.pods import requires_root
from tests.support.cluster import SimulatedCluster, simulated_pods
from tests.support.dns_server import DnsServer, ThreadedDnsServer
from tests.support.kubelet import Kubelet, Sample, get_json

pytestmark = [pytest.mark.slow, pytest.mark.root, requires_root, pytest.mark.timeout(420)]

MANIFEST = "h2o-cluster.yaml"
LOOKUP_FAILED = 69
CLOUD_LOST = 70


class Scenario(SimulatedCluster):
    def publish(self, ips: list[str], server: DnsServer | None = None) -> None:
        (server or self.dns).set_records(self.service, a=ips)


@pytest.fixture
def scenario() -> Iterator[Scenario]:
    with simulated_pods(MANIFEST) as (network, dns, pods, manifest):
        yield Scenario(network, dns, pods, manifest, manifest_args=False)


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
