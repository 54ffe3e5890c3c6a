"""End to end with H2O's own REST security, on simulated pods with real JVMs and a real DNS.

Three pods run the env and arguments of ``docker/kubernetes/h2o-secured.yaml``: H2O with
``-hash_login``, HTTPS from a keystore with a password of its own (``H2O_JKS_PASSWORD_FILE``),
and TLS between the nodes (``-internal_security_conf``); the Secret's files are made for real
(keytool, an MD5 hash realm) and mounted at a test directory instead of /etc/h2o-security. The
keystore's certificate names no IP, as a shared one in a real cluster cannot know the pods'
addresses: the watcher checks the chain only (the manifest's ``H2O_REST_TLS_CHECK_HOSTNAME``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from k8s_sim.pods import Pod, requires_root
from tests.support.cluster import SimulatedCluster, simulated_pods
from tests.support.kubelet import get_json
from tests.support.tls_material import make_keystore, new_password, secret_file

pytestmark = [pytest.mark.slow, pytest.mark.root, requires_root, pytest.mark.timeout(480)]

MANIFEST = "h2o-secured.yaml"
MOUNT = "/etc/h2o-security/"
FORMATION_DEADLINE = 200.0


@dataclass
class Secrets:
    directory: Path
    rest_password: str
    jks_password: str
    internal_password: str

    def all(self) -> list[str]:
        return [self.rest_password, self.jks_password, self.internal_password]


def make_secrets(directory: Path, user: str) -> Secrets:
    """Every file of the manifest's Secret, made for real."""
    directory.mkdir(parents=True)
    rest, jks, internal = new_password(), new_password(), new_password()
    keystore = make_keystore(directory, "keystore", [], password=jks)
    keystore.ca_pem.rename(directory / "ca.pem")
    make_keystore(directory, "internal", [], password=internal)
    digest = hashlib.md5(rest.encode(), usedforsecurity=False).hexdigest()
    (directory / "realm.properties").write_text(f"{user}: MD5:{digest},user\n")
    secret_file(directory, "rest-password", rest)
    secret_file(directory, "jks-password", jks)
    (directory / "internal-security.properties").write_text(
        "h2o_ssl_protocol=TLSv1.2\n"
        f"h2o_ssl_jks_internal={directory}/internal.p12\n"
        f"h2o_ssl_jks_password={internal}\n"
        f"h2o_ssl_jts={directory}/internal.p12\n"
        f"h2o_ssl_jts_password={internal}\n"
    )
    return Secrets(directory, rest, jks, internal)


@dataclass
class SecuredCluster(SimulatedCluster):
    secrets: Secrets = field(kw_only=True)

    def moved(self, value: str, pod: Pod) -> str:
        """A manifest path moved to where this test keeps it."""
        return super().moved(value, pod).replace(MOUNT, f"{self.secrets.directory}/")

    def manifest_env(self, pod: Pod) -> dict[str, str]:
        return {name: self.moved(v, pod) for name, v in super().manifest_env(pod).items()}

    def logs(self, lines: int = 0) -> str:
        """Everything each pod printed (H2O's output included) and H2O's own log files."""
        parts = []
        for pod in self.pods:
            parts.append(self.log(pod))
            parts += [p.read_text(errors="replace") for p in pod.workdir.rglob("h2o-logs/*")]
        return "\n".join(parts)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SecuredCluster]:
    with simulated_pods(MANIFEST) as (network, dns, pods, manifest):
        user = manifest.pod_env("198.18.0.1")["H2O_REST_USER"]
        secrets = make_secrets(tmp_path / "h2o-security", user)
        cluster = SecuredCluster(
            network,
            dns,
            pods,
            manifest,
            extra_env={"H2O_JVM_STARTUP_CACHE": "off"},
            secrets=secrets,
        )
        dns.set_records(cluster.service, a=[pod.ip for pod in pods])
        yield cluster


def h2o_cloud(pod: Pod, cluster: SecuredCluster, password: str | None) -> tuple[int, Any]:
    """``GET /3/Cloud`` over HTTPS on the pod, trusting the Secret's CA; (status, JSON)."""
    context = ssl.create_default_context(cafile=str(cluster.secrets.directory / "ca.pem"))
    context.check_hostname = False  # the certificate names no IP, as in the manifest
    request = urllib.request.Request(f"https://{pod.ip}:54321/3/Cloud?skip_ticks=true")
    if password is not None:
        user = cluster.settings.rest.user
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, None


def test_a_secured_cloud_forms_and_keeps_its_passwords(cluster: SecuredCluster) -> None:
    """Login, HTTPS and node TLS: one Ready leader, a cloud of 3, no password shown anywhere."""
    started = time.monotonic()
    processes = [cluster.start(pod) for pod in cluster.pods]
    try:
        kubelet = cluster.kubelet()
        try:
            first = kubelet.wait_for_one_leader(started + FORMATION_DEADLINE)
        except AssertionError as err:
            raise AssertionError(f"{err}\n{cluster.logs()[-4000:]}") from None
        held = kubelet.hold(5.0)
        assert all(sample.codes == first.codes for sample in held), [s.codes for s in held]
        print(f"\nsecured: exactly one leader {first.at - started:.1f}s after start")
        leader = cluster.pods[first.leader]
        status, cloud = h2o_cloud(leader, cluster, cluster.secrets.rest_password)
        assert status == 200
        assert cloud["cloud_size"] == 3
        assert cloud["consensus"] is True
        assert sorted(n["ip_port"] for n in cloud["nodes"]) == sorted(
            f"{pod.ip}:54321" for pod in cluster.pods
        )
        assert h2o_cloud(leader, cluster, None)[0] == 401
        api_port = cluster.settings.probe.api_port
        shown = [cluster.logs()]
        for pod in cluster.pods:
            described = get_json(pod, api_port, "/status")
            assert described["rest_problem"] is None
            shown.append(json.dumps(described))
            metrics = pod.http_get(api_port, "/metrics")
            assert metrics is not None
            shown.append(metrics[1].decode())
            for pid in pod.pids():
                for name in ("cmdline", "environ"):
                    raw = Path(f"/proc/{pid}/{name}").read_bytes()
                    shown.append(raw.replace(b"\0", b" ").decode(errors="replace"))
        assert "Processed H2O arguments" in shown[0], "H2O's own output was not captured"
        everything = "\n".join(shown)
        for password in cluster.secrets.all():
            assert password not in everything
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        statuses = [process.wait(timeout=30) for process in processes]
    assert statuses == [143, 143, 143], cluster.logs()[-3000:]


def test_a_wrong_password_keeps_every_pod_unready(cluster: SecuredCluster) -> None:
    """A password the realm refuses: /status says what to fix and no pod ever turns Ready."""
    (cluster.secrets.directory / "rest-password").write_text(new_password() + "\n")
    processes = [cluster.start(pod) for pod in cluster.pods]
    api_port = cluster.settings.probe.api_port
    try:
        deadline = time.monotonic() + FORMATION_DEADLINE
        problems: dict[str, str] = {}
        while len(problems) < len(cluster.pods):
            assert time.monotonic() < deadline, cluster.logs()[-3000:]
            for pod in cluster.pods:
                answer = pod.http_get(api_port, "/status")
                if answer is not None and json.loads(answer[1]).get("rest_problem"):
                    problems[pod.name] = json.loads(answer[1])["rest_problem"]
            time.sleep(0.5)
        assert all("401" in problem for problem in problems.values()), problems
        kubelet = cluster.kubelet()
        for sample in kubelet.hold(5.0):
            assert 200 not in sample.codes, sample.codes
        errors = [
            line
            for line in cluster.logs().splitlines()
            if '"rest-problem"' in line or "answered 401" in line
        ]
        assert len(errors) == len(cluster.pods), errors
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
