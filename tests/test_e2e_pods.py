"""End to end on simulated pods: real entrypoints, real H2O JVMs, a real DNS server.

Each pod is a network namespace with its own IP and resolv.conf; the DNS server on the bridge
plays the cluster DNS and publishes the headless Service. Each entrypoint gets the environment
and arguments of a StatefulSet under docker/kubernetes/ (ours, and the H2O-compatible one), and
the kubelet-like poller probes what that manifest's readiness probe names, so a manifest that
drifts from the code fails here. Only what cannot be shared between pods on one machine is
moved: the jar's path, and the paths under /tmp.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from h2o_k8s_discovery.server.probes import HEALTH_PATH
from k8s_sim.pods import Pod, requires_root
from tests.support.cluster import SimulatedCluster, simulated_pods
from tests.support.kubelet import Kubelet, get_json

pytestmark = [pytest.mark.slow, pytest.mark.root, requires_root, pytest.mark.timeout(420)]

FORMATION_DEADLINE = 150.0
SEED = "h2o-compatible.yaml"
OURS = "h2o-cluster.yaml"


class Cluster(SimulatedCluster):
    def publish(self, pods: list[Pod]) -> None:
        self.dns.set_records(self.service, a=[pod.ip for pod in pods])

    def start_entrypoints(self) -> list[subprocess.Popen[bytes]]:
        return [self.start(pod) for pod in self.pods]


@pytest.fixture(params=[SEED, OURS])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    with simulated_pods(request.param) as (network, dns, pods, manifest):
        yield Cluster(network, dns, pods, manifest)


def wait_exit(process: subprocess.Popen[bytes], deadline: float) -> int | None:
    try:
        return process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return None


def stop_all_and_check(cluster: Cluster, processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every entrypoint: each exits within the grace time and leaves no process."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + cluster.settings.launch.shutdown_grace + 2
    statuses = [wait_exit(process, deadline) for process in processes]
    assert None not in statuses, f"an entrypoint outlived the grace time:\n{cluster.logs()}"
    # The JVM ends on SIGTERM with 143, and the entrypoint passes that status on.
    assert statuses == [143, 143, 143], cluster.logs()
    for pod in cluster.pods:
        assert pod.pids() == [], f"{pod.name} still runs {pod.pids()}"


def check_one_cloud(cluster: Cluster, kubelet: Kubelet, started: float) -> float:
    """Exactly one pod 200 and the others 404, held 10 s; the leader's cloud has 3 members."""
    first = kubelet.wait_for_one_leader(started + FORMATION_DEADLINE)
    held = kubelet.hold(10.0)
    assert all(sample.codes == first.codes for sample in held), [s.codes for s in held]
    leader = cluster.pods[first.leader]
    h2o_cloud = get_json(leader, 54321, "/3/Cloud?skip_ticks=true")
    assert h2o_cloud["cloud_size"] == 3
    assert h2o_cloud["consensus"] is True
    members = sorted(node["ip_port"] for node in h2o_cloud["nodes"])
    expected_name = cluster.settings.launch.cloud_name
    if expected_name is not None:
        assert h2o_cloud["cloud_name"] == expected_name
    assert members == sorted(f"{pod.ip}:54321" for pod in cluster.pods)
    status = get_json(leader, cluster.api_port, "/status")
    assert status["is_leader"] is True
    assert status["cloud_size"] == 3
    return first.at - started


def test_three_pods_form_one_cloud(cluster: Cluster) -> None:
    """With H2O's manifest environment, three pods form one cloud with exactly one Ready leader."""
    cluster.publish(cluster.pods)
    started = time.monotonic()
    processes = cluster.start_entrypoints()
    kubelet = cluster.kubelet()
    took = check_one_cloud(cluster, kubelet, started)
    print(f"\n{cluster.manifest.path.name}: exactly one leader {took:.1f}s after start")
    flatfiles = {(pod.workdir / "flatfile").read_text() for pod in cluster.pods}
    assert len(flatfiles) == 1, "pods wrote different flatfiles"
    stop_all_and_check(cluster, processes)


def test_late_record_still_one_cloud(cluster: Cluster) -> None:
    """The third pod's record appears 10 s late: the others wait for it; one cloud of 3."""
    cluster.publish(cluster.pods[:2])
    started = time.monotonic()
    processes = cluster.start_entrypoints()
    kubelet = cluster.kubelet()
    forming = 200 if cluster.settings.probe.ready_until_formed else 503
    late = started + 10.0
    while time.monotonic() < late:
        sample = kubelet.sample()
        # While the record is missing nobody may have formed anything: all still forming.
        assert set(sample.codes) <= {None, forming}, sample.codes
        time.sleep(kubelet.period)
    cluster.publish(cluster.pods)
    took = check_one_cloud(cluster, kubelet, started)
    print(f"\n{cluster.manifest.path.name}, late record: one leader {took:.1f}s after start")
    stop_all_and_check(cluster, processes)


def test_sigterm_during_lookup_starts_no_jvm(cluster: Cluster) -> None:
    """A SIGTERM while the lookup waits ends the entrypoint at once: 143, no JVM, no flatfile."""
    processes = cluster.start_entrypoints()
    deadline = time.monotonic() + 30
    for pod in cluster.pods:
        while pod.http_get(cluster.api_port, HEALTH_PATH) is None:
            assert time.monotonic() < deadline, f"{pod.name}'s probe server never came up"
            time.sleep(0.1)
    for process in processes:
        process.send_signal(signal.SIGTERM)
    statuses = [wait_exit(p, time.monotonic() + 5) for p in processes]
    assert statuses == [143, 143, 143]
    assert not any((p.workdir / "flatfile").exists() for p in cluster.pods)
    assert all(p.pids() == [] for p in cluster.pods)
