"""Restarts and upgrades on simulated pods, as ``updateStrategy: OnDelete`` makes them happen.

An H2O cloud cannot take its pods one at a time: a replaced pod is refused by the running cloud
(locked once it has served a job, and refused in any case when its h2o.jar differs, since H2O
compares the jar's md5 with its peers'). Our manifest therefore leaves replacing to the user,
who deletes every pod at once (README, "Upgrades and restarts"). These tests hold that
procedure to the code: all pods replaced together form one new cloud, on the new jar; and pods
started with different jars end instead of waiting forever for a cloud that cannot form.

The second jar is the first with one harmless entry appended: the same H2O, another md5.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from h2o_k8s_discovery import exit_codes
from h2o_k8s_discovery.jvm.jar import ensure_h2o_jar
from k8s_sim.manifests import deployment
from k8s_sim.pods import Pod, PodNetwork, requires_root
from tests.support.dns_server import DnsServer, ThreadedDnsServer
from tests.support.kubelet import Kubelet, get_json

pytestmark = [pytest.mark.slow, pytest.mark.root, requires_root, pytest.mark.timeout(600)]

MANIFEST = deployment("h2o-cluster.yaml")
SERVICE = MANIFEST.pod_env("198.18.0.1")["H2O_KUBERNETES_SERVICE_DNS"]
FORMATION_DEADLINE = 150.0
#: How long pods with different jars may take to give up: H2O notices at its first heartbeats.
MISMATCH_DEADLINE = 120.0
#: The formation deadline given to the pods, and what the lookup before it and the shutdown
#: after it may take on top.
FORMATION_TIMEOUT = 30
GRACE_AND_MARGIN = 45.0


@pytest.fixture(scope="module")
def jars(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The cached h2o.jar, and a copy with one more entry: another H2O build as H2O sees it."""
    original = ensure_h2o_jar(progress=False)
    directory = tmp_path_factory.mktemp("jars")
    other = directory / "h2o-other.jar"
    shutil.copyfile(original, other)
    with zipfile.ZipFile(other, "a") as jar:
        jar.writestr("META-INF/h2o-k8s-discovery-test.txt", "another build of the same H2O\n")
    try:
        yield original, other
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def network() -> Iterator[tuple[PodNetwork, DnsServer]]:
    with (
        PodNetwork(namespace=MANIFEST.namespace) as pods,
        ThreadedDnsServer(pods.gateway, 53) as dns,
    ):
        yield pods, dns


def start(pod: Pod, jar: Path, **extra: str) -> subprocess.Popen[bytes]:
    """Our manifest's env and args for ``pod``, on ``jar``, the paths under /tmp moved."""
    env = (
        MANIFEST.pod_env(pod.ip)
        | extra
        | {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "H2O_JAR": str(jar),
            "H2O_JVM_STARTUP_CACHE": "off",
            "H2O_FLATFILE": str(pod.workdir / "flatfile"),
            "JAVA_OPTS": f"-Xmx512m -Djava.io.tmpdir={pod.tmpdir}",
        }
    )
    args = [a.replace("/tmp/", f"{pod.workdir}/") for a in MANIFEST.args()]
    return pod.spawn(
        [sys.executable, "-m", "h2o_k8s_discovery", "run", "--", *args],
        env=env,
        log_path=pod.workdir / "entrypoint.log",
    )


def logs(pods: list[Pod]) -> str:
    parts = []
    for pod in pods:
        log = pod.workdir / "entrypoint.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        parts.append(f"--- {pod.name}\n" + "\n".join(text.splitlines()[-20:]))
    return "\n".join(parts)


def form(pods: list[Pod]) -> Pod:
    """Wait for one Ready leader whose H2O sees exactly ``pods``; return the leader."""
    probe = MANIFEST.probe("readinessProbe")
    assert probe is not None
    kubelet = Kubelet(pods, probe[1], probe[0])
    try:
        sample = kubelet.wait_for_one_leader(time.monotonic() + FORMATION_DEADLINE)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{logs(pods)}") from None
    leader = pods[sample.leader]
    cloud = get_json(leader, 54321, "/3/Cloud?skip_ticks=true")
    assert cloud["consensus"] is True
    assert sorted(node["ip_port"] for node in cloud["nodes"]) == sorted(
        f"{pod.ip}:54321" for pod in pods
    )
    return leader


def delete_all(processes: list[subprocess.Popen[bytes]], pods: list[Pod]) -> None:
    """What ``kubectl delete pod`` does to each at once: SIGTERM, then the grace period."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
    grace = int(MANIFEST.pod_spec["terminationGracePeriodSeconds"])
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"a pod outlived its grace period:\n{logs(pods)}")
    assert [p.returncode for p in processes] == [143] * len(processes), logs(pods)


def test_all_pods_replaced_together_form_one_new_cloud(
    network: tuple[PodNetwork, DnsServer], jars: tuple[Path, Path]
) -> None:
    """Deleting every pod at once, the new pods (new IPs, a new jar) form one new cloud."""
    pods, dns = network
    old_jar, new_jar = jars
    old = [pods.add_pod(f"h2o-{i}") for i in range(MANIFEST.replicas)]
    dns.set_records(SERVICE, a=[pod.ip for pod in old])
    running = [start(pod, old_jar) for pod in old]
    form(old)

    delete_all(running, old)
    # The StatefulSet creates each pod again once the old one is gone; its record goes with it.
    dns.set_records(SERVICE, a=[])
    new = [pods.add_pod(f"h2o-{i}-new") for i in range(MANIFEST.replicas)]
    dns.set_records(SERVICE, a=[pod.ip for pod in new])
    replaced = [start(pod, new_jar) for pod in new]
    leader = form(new)
    assert get_json(leader, 54321, "/3/Cloud?skip_ticks=true")["cloud_size"] == len(new)
    for pod in new:
        (jvm,) = [pid for pid in pod.pids() if _is_java(pid)]
        assert str(new_jar) in Path(f"/proc/{jvm}/cmdline").read_bytes().decode().split("\0")
    delete_all(replaced, new)


def _is_java(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "java"
    except OSError:
        return False


def test_mixed_h2o_versions_fail_loudly(
    network: tuple[PodNetwork, DnsServer], jars: tuple[Path, Path]
) -> None:
    """A pod on another jar exits with H2O's md5 mismatch, no pod is ever Ready or formed, and
    every pod ends: the others the same way, or at the formation deadline (69)."""
    pods, dns = network
    old_jar, new_jar = jars
    members = [pods.add_pod(f"h2o-{i}") for i in range(MANIFEST.replicas)]
    dns.set_records(SERVICE, a=[pod.ip for pod in members])
    jar_of = [old_jar] * (len(members) - 1) + [new_jar]
    deadline = {"H2O_CLOUD_FORMATION_TIMEOUT": str(FORMATION_TIMEOUT)}
    processes = [start(pod, jar, **deadline) for pod, jar in zip(members, jar_of, strict=True)]
    odd = processes[-1]
    probe = MANIFEST.probe("readinessProbe")
    assert probe is not None
    kubelet = Kubelet(members, probe[1], probe[0])
    started = time.monotonic()
    while odd.poll() is None and time.monotonic() < started + MISMATCH_DEADLINE:
        assert 200 not in kubelet.sample().codes, f"a pod became Ready:\n{logs(members)}"
        time.sleep(0.5)
    took = time.monotonic() - started
    assert odd.poll() is not None, f"the pod on the other jar still waits:\n{logs(members)}"
    # H2O.die: the JVM exits 255, and the entrypoint passes that on (a CrashLoopBackOff).
    assert odd.returncode == 255, logs(members)
    text = "\n".join(_full_log(pod) for pod in members)
    assert "with an H2O version mismatch (md5 differs)" in text, logs(members)
    # The others either died the same way (each was still alone when it heard the odd one),
    # or formed a cloud of two first, which turned the odd one away: never Ready, never formed,
    # until the formation deadline stops them.
    end = started + FORMATION_TIMEOUT + GRACE_AND_MARGIN
    for pod, process in zip(members[:-1], processes[:-1], strict=True):
        while process.poll() is None and time.monotonic() < end:
            assert 200 not in kubelet.sample().codes, f"a pod became Ready:\n{logs(members)}"
            time.sleep(0.5)
        assert process.returncode in (255, exit_codes.LOOKUP_FAILED), logs(members)
        if process.returncode == exit_codes.LOOKUP_FAILED:
            assert "H2O_CLOUD_FORMATION_TIMEOUT" in _full_log(pod), logs(members)
    statuses = [p.poll() for p in processes]
    print(f"\nmixed jars: exit statuses {statuses}; the odd pod after {took:.1f}s")


def _full_log(pod: Pod) -> str:
    log = pod.workdir / "entrypoint.log"
    return log.read_text(errors="replace") if log.exists() else ""
