"""Real H2O clouds over IPv6: three JVMs on simulated pods with addresses in 2001:2::/48.

Each pod is a network namespace (``k8s_sim/pods.py``) on an IPv6-only bridge, or on a dual-stack
one whose pods run on their IPv6 address. The package's DNS server on the bridge's gateway
(the pods' nameserver) publishes the headless Service's AAAA records, and its A records too on
dual stack. The entrypoints get docker/kubernetes/h2o-cluster.yaml's environment with
``POD_IP`` the pod's IPv6 address. H2O names its IPv6 members
``2001:2:0:1:0:0:0:11:54321``, the flatfile ``[2001:2:0:1::11]:54321``: the cloud is whole
only if they are compared as addresses.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from h2o_k8s_discovery import exit_codes
from k8s_sim.pods import Pod, requires_root
from tests.support.cluster import SimulatedCluster, simulated_pods
from tests.support.kubelet import Kubelet, Sample

pytestmark = [pytest.mark.slow, pytest.mark.root, requires_root, pytest.mark.timeout(420)]

OURS = "h2o-cluster.yaml"
#: H2O's documented StatefulSet: no POD_IP, so ``auto`` finds the family in the hosts file.
SEED = "h2o-compatible.yaml"
FORMATION_DEADLINE = 150.0


@dataclass
class Cloud(SimulatedCluster):
    #: The family the pods run on (their POD_IP): IPv6, or IPv4 on a dual-stack network.
    version: int = 6

    SETTINGS_POD_IP: ClassVar[str] = "2001:2::1"

    def ip(self, pod: Pod) -> str:
        """The address the pod runs on: its POD_IP."""
        address = pod.address6 if self.version == 6 else pod.address
        assert address is not None
        return str(address)

    def pod_ip(self, pod: Pod) -> str:
        return self.ip(pod)

    def peer(self, pod: Pod) -> str:
        """The pod as the flatfile and /status name it."""
        return f"[{self.ip(pod)}]:54321" if self.version == 6 else f"{self.ip(pod)}:54321"

    def publish(self) -> None:
        a = [str(pod.address) for pod in self.pods if pod.address is not None]
        aaaa = [str(pod.address6) for pod in self.pods if pod.address6 is not None]
        self.dns.set_records(self.service, a=a, aaaa=aaaa)

    def get_json(self, pod: Pod, port: int, path: str) -> dict[str, Any]:
        """GET over the address the pod runs on, whatever its primary address is."""
        conn = http.client.HTTPConnection(self.ip(pod), port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        assert response.status == 200, (pod.name, path, response.status, body[:200])
        data: dict[str, Any] = json.loads(body)
        return data

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"--- {pod.name}\n{self.log(pod)[-3000:]}" for pod in self.pods)


#: (network family, the family the pods run on, the manifest whose env they get).
IPV6_ONLY = pytest.param(("ipv6", 6, OURS), id="ipv6-only")
IPV6_ONLY_SEED = pytest.param(("ipv6", 6, SEED), id="ipv6-only-seed-manifest")
DUAL_ON_IPV6 = pytest.param(("dual", 6, OURS), id="dual-stack-on-ipv6")
DUAL_ON_IPV4 = pytest.param(("dual", 4, OURS), id="dual-stack-on-ipv4")


@pytest.fixture
def cloud(request: pytest.FixtureRequest) -> Iterator[Cloud]:
    family, version, manifest_file = request.param
    with simulated_pods(manifest_file, family) as (network, dns, pods, manifest):
        yield Cloud(
            network,
            dns,
            pods,
            manifest,
            extra_env={"H2O_JVM_STARTUP_CACHE": "off"},
            manifest_args=False,
            version=version,
        )


def h2o_form(ip: str) -> str:
    """An address as H2O (Java's ``getHostAddress()``) writes it: IPv6 as eight groups."""
    address = ipaddress.ip_address(ip)
    if address.version == 4:
        return ip
    return ":".join(f"{int(group, 16):x}" for group in address.exploded.split(":"))


def one_leader(cloud: Cloud, kubelet: Kubelet) -> Sample:
    """Probe until exactly one pod is Ready (200) and the others answer 404."""
    try:
        return kubelet.wait_for_one_leader(time.monotonic() + FORMATION_DEADLINE)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{cloud.logs()}") from None


def form(cloud: Cloud) -> Sample:
    cloud.publish()
    for pod in cloud.pods:
        cloud.start(pod)
    return one_leader(cloud, cloud.kubelet())


@pytest.mark.parametrize(
    "cloud", [IPV6_ONLY, IPV6_ONLY_SEED, DUAL_ON_IPV6, DUAL_ON_IPV4], indirect=True
)
def test_ipv6_cloud_forms_with_one_leader(cloud: Cloud) -> None:
    """3 JVMs over IPv6 (or dual stack) form one cloud: one Ready leader held 5 s, no damage."""
    first = form(cloud)
    kubelet = cloud.kubelet()
    held = kubelet.hold(5.0)
    assert all(sample.codes == first.codes for sample in held), [s.codes for s in held]
    leader = cloud.pods[first.leader]
    h2o = cloud.get_json(leader, 54321, "/3/Cloud?skip_ticks=true")
    assert h2o["cloud_size"] == 3
    assert h2o["consensus"] is True
    # H2O's own form: uncompressed, no brackets; nothing here compares it as text.
    members = sorted(node["ip_port"] for node in h2o["nodes"])
    assert members == sorted(f"{h2o_form(cloud.ip(pod))}:54321" for pod in cloud.pods)
    status = cloud.get_json(leader, cloud.settings.probe.api_port, "/status")
    assert status["phase"] == "formed"
    assert status["damage"] is None
    assert status["is_leader"] is True
    assert status["cloud_size"] == 3
    assert status["leader"] == cloud.peer(leader)
    assert status["peers"] == [cloud.peer(pod) for pod in cloud.pods]
    assert f"leader node IP is '/{cloud.ip(leader)}'" in cloud.log(leader)
    if "POD_IP" not in cloud.manifest.pod_env(""):
        # auto without POD_IP: the family of the pod's address in its hosts file.
        assert f"the family of {cloud.ip(leader)}, this host's address in /etc/hosts" in (
            cloud.log(leader)
        )
    flatfiles = {(pod.workdir / "flatfile").read_text() for pod in cloud.pods}
    assert flatfiles == {"".join(f"{cloud.peer(pod)}\n" for pod in cloud.pods)}
    cloud.stop_all()


@pytest.mark.parametrize("cloud", [IPV6_ONLY, DUAL_ON_IPV6], indirect=True)
def test_ipv6_killed_member_is_detected(cloud: Cloud) -> None:
    """A follower's JVM SIGKILLed in an IPv6 cloud: the leader leaves 200 within 2 s, exits 70."""
    first = form(cloud)
    leader = cloud.pods[first.leader]
    follower = cloud.pods[(first.leader + 1) % 3]
    (java,) = cloud.java_pids(follower)
    os.kill(java, signal.SIGKILL)
    killed = time.monotonic()
    path, port = cloud.manifest.probe("readinessProbe") or ("", 0)
    while (answer := leader.http_get(port, path)) is not None and answer[0] == 200:
        assert time.monotonic() - killed < 2.0, f"the leader stayed Ready\n{cloud.logs()}"
        time.sleep(0.05)
    leader_process = cloud.processes[leader.name]
    grace = cloud.settings.launch.shutdown_grace
    assert leader_process.wait(timeout=grace + 10) == exit_codes.CLOUD_LOST, cloud.logs()
    log = cloud.log(leader)
    assert f"member(s) lost: {cloud.peer(follower)}" in log
    cloud.stop_all()
