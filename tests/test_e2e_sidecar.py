"""The sidecar layout on simulated pods: stock H2O started by itself, our probes beside it.

Each pod runs what docker/kubernetes/h2o-sidecar.yaml runs, in the same order: the init
container's ``discover --write``, then the H2O container's own ``java`` command line, then the
native sidecar's ``sidecar``. Paths under /shared and /tmp and the jar's path are moved per pod;
everything else comes from the manifest.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from h2o_k8s_discovery.config.settings import Settings
from h2o_k8s_discovery.jvm.jar import ensure_h2o_jar
from k8s_sim.manifests import Deployment, deployment
from k8s_sim.pods import Pod, PodNetwork, requires_root
from tests.support.dns_server import ThreadedDnsServer
from tests.support.kubelet import Kubelet, get_json

pytestmark = [pytest.mark.slow, pytest.mark.root, requires_root, pytest.mark.timeout(420)]

MANIFEST = "h2o-sidecar.yaml"


def moved(pod: Pod, word: str) -> str:
    """A manifest path moved into the pod's own directory (pods share one filesystem here)."""
    if word == "/opt/h2o.jar":
        return str(ensure_h2o_jar(progress=False))
    if word.startswith("/shared/"):
        return str(pod.workdir / "shared" / word.removeprefix("/shared/"))
    return word


def env_of(manifest: Deployment, pod: Pod, container: str) -> dict[str, str]:
    env = manifest.pod_env(pod.ip, manifest.named(container))
    return {
        **{key: moved(pod, value) for key, value in env.items()},
        "PATH": os.environ["PATH"],
    }


def command_of(manifest: Deployment, pod: Pod, container: str) -> list[str]:
    words = [moved(pod, w) for w in manifest.command_line(manifest.named(container), pod.ip)]
    if words[0] == "h2o-k8s-discovery":
        return [sys.executable, "-m", "h2o_k8s_discovery", *words[1:]]
    assert words[0] == "java"
    # Heap and temp dir fit a test machine; H2O's own arguments are the manifest's.
    return [
        "java",
        "-Xmx512m",
        f"-Djava.io.tmpdir={pod.tmpdir}",
        *words[1:],
        "-ice_root",
        str(pod.ice_root),
    ]


@pytest.fixture
def network() -> Iterator[PodNetwork]:
    with PodNetwork() as net:
        yield net


def test_sidecar_layout(network: PodNetwork) -> None:
    """discover, stock java, sidecar: one leader held 10 s, a dead JVM is seen within 2 s."""
    manifest = deployment(MANIFEST)
    settings = Settings.from_env(manifest.pod_env("198.18.0.1"))
    pods = [network.add_pod(f"h2o-{i}") for i in range(manifest.replicas)]
    with ThreadedDnsServer(network.gateway, 53) as dns:
        dns.set_records(settings.lookup.service_dns, a=[pod.ip for pod in pods])
        discovering = [
            pod.spawn(command_of(manifest, pod, "discover"), env_of(manifest, pod, "discover"))
            for pod in pods
        ]
        assert [p.wait(timeout=60) for p in discovering] == [0, 0, 0]
    flatfiles = {(pod.workdir / "shared" / "flatfile").read_text() for pod in pods}
    assert flatfiles == {"".join(f"{pod.ip}:54321\n" for pod in pods)}

    jvms = {
        pod.name: pod.spawn(
            command_of(manifest, pod, "h2o"),
            env_of(manifest, pod, "h2o"),
            log_path=pod.workdir / "h2o.log",
        )
        for pod in pods
    }
    sidecars = [
        pod.spawn(
            command_of(manifest, pod, "probes"),
            env_of(manifest, pod, "probes"),
            log_path=pod.workdir / "sidecar.log",
        )
        for pod in pods
    ]
    path, port = manifest.probe("readinessProbe") or ("", 0)
    kubelet = Kubelet(pods, port, path)
    first = kubelet.wait_for_one_leader(time.monotonic() + 150)
    held = kubelet.hold(10.0)
    assert all(sample.codes == first.codes for sample in held), [s.codes for s in held]

    leader = pods[first.leader]
    jvms[leader.name].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    while (answer := leader.http_get(port, path)) is not None and answer[0] == 200:
        assert time.monotonic() - killed < 2.0, "the leader stayed Ready after its JVM died"
        time.sleep(0.05)
    # Its port refuses: a latched loss, so a new JVM rejoining there cannot make it Ready again.
    while (damage := get_json(leader, port, "/status")["damage"]) is None:
        assert time.monotonic() - killed < 3.0, "the sidecar never saw its node's port refuse"
        time.sleep(0.05)
    assert damage == "the local H2O node refused a connection: nothing listens on its H2O port"

    for sidecar in sidecars:
        sidecar.send_signal(signal.SIGTERM)
    assert [s.wait(timeout=10) for s in sidecars] == [0, 0, 0]
    sidecar_log = Path(pods[0].workdir / "sidecar.log").read_text()
    assert "Traceback" not in sidecar_log
    for jvm in jvms.values():
        if jvm.poll() is None:
            jvm.send_signal(signal.SIGTERM)
            jvm.wait(timeout=15)


def test_sidecar_waits_for_the_flatfile(network: PodNetwork) -> None:
    """Started before the flatfile exists, the sidecar says so, serves probes, and stops on TERM."""
    manifest = deployment(MANIFEST)
    pod = network.add_pod("h2o-0")
    sidecar = pod.spawn(
        command_of(manifest, pod, "probes"),
        env_of(manifest, pod, "probes"),
        log_path=pod.workdir / "sidecar.log",
    )
    path, port = manifest.probe("readinessProbe") or ("", 0)
    deadline = time.monotonic() + 20
    while (answer := pod.http_get(port, "/status")) is None:
        assert time.monotonic() < deadline, "the sidecar never served /status"
        time.sleep(0.1)
    assert b'"phase": "looking-up"' in answer[1]
    assert pod.http_get(port, path) == (503, b"")
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait(timeout=10) == 0
    assert "waiting for the flatfile" in (pod.workdir / "sidecar.log").read_text()
