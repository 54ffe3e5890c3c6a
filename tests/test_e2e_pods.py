"""End to end on simulated pods: real entrypoints, real H2O JVMs, a real DNS server.

Each pod is a network namespace with its own IP and resolv.conf; the DNS server on the bridge
plays the cluster DNS and publishes the headless Service. The entrypoints get the environment
of H2O's own StatefulSet manifest, so this is what a user of that manifest would see.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest

from h2o_k8s_discovery.dns_server import DnsServer, ThreadedDnsServer
from h2o_k8s_discovery.jar import ensure_h2o_jar
from tests.kubelet import Kubelet, get_json
from tests.pods import Pod, PodNetwork, requires_root

pytestmark = [pytest.mark.slow, pytest.mark.root, requires_root, pytest.mark.timeout(420)]

#: The environment of H2O's documented StatefulSet (the "compatible" manifest).
SEED_ENV = {
    "H2O_KUBERNETES_SERVICE_DNS": "h2o-service.h2o-statefulset.svc.cluster.local",
    "H2O_NODE_LOOKUP_TIMEOUT": "180",
    "H2O_NODE_EXPECTED_COUNT": "3",
    "H2O_KUBERNETES_API_PORT": "8081",
}
FORMATION_DEADLINE = 150.0
GRACE = 8.0


@dataclass
class Cluster:
    network: PodNetwork
    dns: DnsServer
    pods: list[Pod]
    service: str
    api_port: int

    def publish(self, pods: list[Pod]) -> None:
        self.dns.set_records(self.service, a=[pod.ip for pod in pods])

    def start_entrypoints(self, env: Mapping[str, str]) -> list[subprocess.Popen[bytes]]:
        jar = ensure_h2o_jar(progress=False)
        return [
            pod.spawn(
                [
                    sys.executable,
                    "-m",
                    "h2o_k8s_discovery",
                    "run",
                    "--",
                    "-ice_root",
                    str(pod.ice_root),
                ],
                env={
                    **env,
                    "PATH": os.environ["PATH"],
                    "H2O_JAR": str(jar),
                    "H2O_FLATFILE": str(pod.workdir / "flatfile"),
                    "JAVA_OPTS": f"-Xmx512m -Djava.io.tmpdir={pod.tmpdir}",
                },
                log_path=pod.workdir / "entrypoint.log",
            )
            for pod in self.pods
        ]

    def logs(self) -> str:
        parts = []
        for pod in self.pods:
            log = pod.workdir / "entrypoint.log"
            text = log.read_text(errors="replace") if log.exists() else ""
            lines = [line for line in text.splitlines() if "h2o_k8s_discovery" in line]
            parts.append(f"--- {pod.name}\n" + "\n".join(lines[-30:]))
        return "\n".join(parts)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with PodNetwork() as network:
        pods = [network.add_pod(f"h2o-{i}") for i in range(3)]
        with ThreadedDnsServer(network.gateway, 53) as dns:
            yield Cluster(
                network=network,
                dns=dns,
                pods=pods,
                service=SEED_ENV["H2O_KUBERNETES_SERVICE_DNS"],
                api_port=int(SEED_ENV["H2O_KUBERNETES_API_PORT"]),
            )


def wait_exit(process: subprocess.Popen[bytes], deadline: float) -> int | None:
    try:
        return process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return None


def stop_all_and_check(cluster: Cluster, processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every entrypoint: each exits within the grace time and leaves no process."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE + 2
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
    assert members == sorted(f"{pod.ip}:54321" for pod in cluster.pods)
    status = get_json(leader, cluster.api_port, "/status")
    assert status["is_leader"] is True
    assert status["cloud_size"] == 3
    return first.at - started


def test_three_pods_form_one_cloud(cluster: Cluster) -> None:
    """With H2O's manifest environment, three pods form one cloud with exactly one Ready leader."""
    cluster.publish(cluster.pods)
    started = time.monotonic()
    processes = cluster.start_entrypoints(SEED_ENV)
    kubelet = Kubelet(cluster.pods, cluster.api_port)
    took = check_one_cloud(cluster, kubelet, started)
    print(f"\nthree pods: exactly one leader {took:.1f}s after start")
    flatfiles = {(pod.workdir / "flatfile").read_text() for pod in cluster.pods}
    assert len(flatfiles) == 1, "pods wrote different flatfiles"
    stop_all_and_check(cluster, processes)


def test_late_record_still_one_cloud(cluster: Cluster) -> None:
    """The third pod's record appears 10 s late: the others wait for it; one cloud of 3."""
    cluster.publish(cluster.pods[:2])
    started = time.monotonic()
    processes = cluster.start_entrypoints(SEED_ENV)
    kubelet = Kubelet(cluster.pods, cluster.api_port)
    late = started + 10.0
    while time.monotonic() < late:
        sample = kubelet.sample()
        # While the record is missing nobody may have formed anything: all still forming (200).
        assert None in sample.codes or sample.codes == (200, 200, 200), sample.codes
        time.sleep(kubelet.period)
    cluster.publish(cluster.pods)
    took = check_one_cloud(cluster, kubelet, started)
    print(f"\nlate record: exactly one leader {took:.1f}s after start")
    stop_all_and_check(cluster, processes)


def test_sigterm_during_lookup_starts_no_jvm(cluster: Cluster) -> None:
    """A SIGTERM while the lookup waits ends the entrypoint at once: 143, no JVM, no flatfile."""
    processes = cluster.start_entrypoints(SEED_ENV)
    deadline = time.monotonic() + 30
    for pod in cluster.pods:
        while pod.http_get(cluster.api_port, "/healthz") is None:
            assert time.monotonic() < deadline, f"{pod.name}'s probe server never came up"
            time.sleep(0.1)
    for process in processes:
        process.send_signal(signal.SIGTERM)
    statuses = [wait_exit(p, time.monotonic() + 5) for p in processes]
    assert statuses == [143, 143, 143]
    assert not any((p.workdir / "flatfile").exists() for p in cluster.pods)
    assert all(p.pids() == [] for p in cluster.pods)
