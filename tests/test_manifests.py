"""The Kubernetes manifests agree with the code: env, probes, Services, grace period."""

from __future__ import annotations

from pathlib import Path

import pytest

from h2o_k8s_discovery.config.rest_security import parse_h2o_args
from h2o_k8s_discovery.config.settings import Settings
from h2o_k8s_discovery.server.probes import HEALTH_PATH, LEADER_PATH
from k8s_sim.manifests import Deployment, Resource, deployments, load, manifest_files

DEPLOYMENTS = deployments()
IDS = [d.path.name for d in DEPLOYMENTS]


def settings_of(deployment: Deployment) -> Settings:
    return Settings.from_env(deployment.pod_env("10.42.0.12"))


def test_every_layout_is_shipped() -> None:
    """Ours, the H2O-compatible example and the sidecar layout, one StatefulSet each."""
    assert sorted(IDS) == [
        "h2o-cluster.yaml",
        "h2o-compatible.yaml",
        "h2o-secured.yaml",
        "h2o-sidecar.yaml",
    ]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=IDS)
def test_env_parses(deployment: Deployment) -> None:
    """The StatefulSet's env is valid settings for the entrypoint."""
    settings = settings_of(deployment)
    assert settings.lookup.expected_count == deployment.replicas


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=IDS)
def test_probes_match_the_server(deployment: Deployment) -> None:
    """Readiness and liveness probe the paths and the port the entrypoint serves."""
    port = settings_of(deployment).probe.api_port
    assert deployment.probe("readinessProbe") == (LEADER_PATH, port)
    liveness = deployment.probe("livenessProbe")
    assert liveness in (None, (HEALTH_PATH, port))


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=IDS)
def test_headless_service_publishes_the_pods(deployment: Deployment) -> None:
    """serviceName names a headless Service that selects the pods, and the DNS name is its own."""
    service = deployment.headless_service()
    assert service["spec"]["clusterIP"] == "None"
    selector = service["spec"]["selector"]
    assert selector.items() <= deployment.pod_labels.items()
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    expected_dns = f"{name}.{namespace}.svc.cluster.local"
    assert settings_of(deployment).lookup.service_dns.rstrip(".") == expected_dns


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=IDS)
def test_ready_only_when_formed_needs_not_ready_addresses(deployment: Deployment) -> None:
    """Pods answering 503 while forming must still be published, or they never find each other."""
    settings = settings_of(deployment)
    publishes = deployment.headless_service()["spec"].get("publishNotReadyAddresses", False)
    assert settings.probe.ready_until_formed or publishes


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=IDS)
def test_grace_fits_termination_period(deployment: Deployment) -> None:
    """The entrypoint kills the JVM at least a second before the kubelet kills the pod."""
    grace = settings_of(deployment).launch.shutdown_grace
    period = deployment.pod_spec.get("terminationGracePeriodSeconds", 30)
    assert grace + 1 <= period


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=IDS)
def test_pods_start_in_parallel(deployment: Deployment) -> None:
    """podManagementPolicy Parallel: with OrderedReady the second pod never starts."""
    assert deployment.statefulset["spec"]["podManagementPolicy"] == "Parallel"


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_one_namespace_per_file(path: Path) -> None:
    """Every namespaced resource of a file is in the same namespace (and it is declared)."""
    resources = load(path)
    namespaces = {r["metadata"].get("namespace") for r in resources if r["kind"] != "Namespace"}
    declared = {r["metadata"]["name"] for r in resources if r["kind"] == "Namespace"}
    assert len(namespaces) == 1
    assert namespaces == declared


def test_our_layout_is_hardened() -> None:
    """Our StatefulSet runs non-root on a read-only root with /tmp as an emptyDir."""
    (ours,) = [d for d in DEPLOYMENTS if d.path.name == "h2o-cluster.yaml"]
    spec = ours.pod_spec
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    container = ours.container
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert ours.headless_service()["spec"]["publishNotReadyAddresses"] is True
    env = ours.pod_env("10.42.0.12")
    assert env["POD_IP"] == "10.42.0.12"
    settings = settings_of(ours)
    assert str(settings.launch.flatfile).startswith("/tmp/")
    assert all(arg.startswith("/tmp/") for arg in ours.args() if arg.startswith("/"))


def test_client_service_selects_the_pods() -> None:
    """The client Service is a normal ClusterIP Service over the same pods (Ready: the leader)."""
    (ours,) = [d for d in DEPLOYMENTS if d.path.name == "h2o-cluster.yaml"]
    headless = ours.headless_service()["metadata"]["name"]
    clients = [s for s in ours.services() if s["metadata"]["name"] != headless]
    assert len(clients) == 1
    assert clients[0]["spec"].get("clusterIP") != "None"
    assert clients[0]["spec"]["selector"].items() <= ours.pod_labels.items()


def test_network_policy_lets_nodes_talk() -> None:
    """The NetworkPolicy admits 54321/54322 over TCP and UDP between the H2O pods."""
    (ours,) = [d for d in DEPLOYMENTS if d.path.name == "h2o-cluster.yaml"]
    (policy,) = [r for r in ours.resources if r["kind"] == "NetworkPolicy"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= ours.pod_labels.items()
    peers_rule = policy["spec"]["ingress"][0]
    assert peers_rule["from"][0]["podSelector"]["matchLabels"].items() <= ours.pod_labels.items()
    allowed = {(p["port"], p["protocol"]) for p in peers_rule["ports"]}
    for port in (54321, 54322):
        assert {(port, "TCP"), (port, "UDP")} <= allowed


SIDECAR = [d for d in DEPLOYMENTS if d.path.name == "h2o-sidecar.yaml"]


@pytest.mark.parametrize("deployment", SIDECAR, ids=["h2o-sidecar.yaml"])
def test_sidecar_layout_shares_one_flatfile(deployment: Deployment) -> None:
    """discover writes, the sidecar reads and java loads the same flatfile on a shared volume."""
    settings = settings_of(deployment)
    flatfile = str(settings.launch.flatfile)
    discover = deployment.named("discover")
    assert deployment.command_line(discover, "10.42.0.12")[-2:] == ["--write", flatfile]
    java = deployment.command_line(deployment.named("h2o"), "10.42.0.12")
    assert java[java.index("-flatfile") + 1] == flatfile
    assert java[java.index("-port") + 1] == str(settings.lookup.h2o_port)
    assert java[java.index("-ip") + 1] == "10.42.0.12"
    for container in deployment.all_containers():
        mounts = [m["mountPath"] for m in container["volumeMounts"]]
        assert any(flatfile.startswith(mount + "/") for mount in mounts), container["name"]


@pytest.mark.parametrize("deployment", SIDECAR, ids=["h2o-sidecar.yaml"])
def test_sidecar_layout_keeps_h2o_unaware(deployment: Deployment) -> None:
    """The stock H2O container gets no H2O_KUBERNETES_* variable, so its own discovery stays off."""
    env = deployment.pod_env("10.42.0.12", deployment.named("h2o"))
    assert not [name for name in env if name.startswith(("H2O_KUBERNETES", "H2O_NODE_"))]


@pytest.mark.parametrize("deployment", SIDECAR, ids=["h2o-sidecar.yaml"])
def test_sidecar_is_native_and_probed(deployment: Deployment) -> None:
    """The probe server is a native sidecar and the headless Service publishes not-ready pods."""
    assert deployment.container["name"] == "probes"
    assert deployment.container["restartPolicy"] == "Always"
    assert deployment.container["command"][-1] == "sidecar"
    assert deployment.headless_service()["spec"]["publishNotReadyAddresses"] is True


def test_our_pods_are_replaced_together() -> None:
    """OnDelete: Kubernetes never replaces one pod alone, which would stall on a locked cloud."""
    (ours,) = [d for d in DEPLOYMENTS if d.path.name == "h2o-cluster.yaml"]
    assert ours.statefulset["spec"]["updateStrategy"] == {"type": "OnDelete"}


def test_our_disruption_budget_refuses_evictions() -> None:
    """The PodDisruptionBudget selects every H2O pod and allows no voluntary disruption."""
    (ours,) = [d for d in DEPLOYMENTS if d.path.name == "h2o-cluster.yaml"]
    (budget,) = [r for r in ours.resources if r["kind"] == "PodDisruptionBudget"]
    assert budget["spec"]["maxUnavailable"] == 0
    assert "minAvailable" not in budget["spec"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= ours.pod_labels.items()


def test_our_pods_prefer_separate_nodes() -> None:
    """Anti-affinity on the node name, preferred only: a Pending pod would leave no cloud."""
    (ours,) = [d for d in DEPLOYMENTS if d.path.name == "h2o-cluster.yaml"]
    anti = ours.pod_spec["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
    assert selector.items() <= ours.pod_labels.items()


SECURED = [d for d in DEPLOYMENTS if d.path.name == "h2o-secured.yaml"]


def secret_mount(deployment: Deployment) -> tuple[str, Resource]:
    """The mount path of the pod's Secret volume and the Secret it names."""
    volumes = {v["name"]: v for v in deployment.pod_spec["volumes"] if "secret" in v}
    (mount,) = [m for m in deployment.container["volumeMounts"] if m["name"] in volumes]
    name = volumes[mount["name"]]["secret"]["secretName"]
    (secret,) = [
        r for r in deployment.resources if r["kind"] == "Secret" and r["metadata"]["name"] == name
    ]
    assert mount.get("readOnly") is True
    return str(mount["mountPath"]), secret


@pytest.mark.parametrize("deployment", SECURED, ids=["h2o-secured.yaml"])
def test_secured_layout_reads_every_secret_from_its_secret(deployment: Deployment) -> None:
    """Every file the env and H2O's arguments name under the mount is a key of the Secret."""
    mount, secret = secret_mount(deployment)
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    named = [
        value
        for value in [*deployment.pod_env("10.42.0.12").values(), *deployment.args()]
        if value.startswith(mount + "/")
    ]
    assert named, "nothing is read from the Secret"
    for path in named:
        assert path.removeprefix(mount + "/") in keys, path
    internal = secret["stringData"]["internal-security.properties"]
    for line in internal.splitlines():
        if line.startswith(("h2o_ssl_jks_internal=", "h2o_ssl_jts=")):
            assert line.partition("=")[2].removeprefix(mount + "/") in keys, line


@pytest.mark.parametrize("deployment", SECURED, ids=["h2o-secured.yaml"])
def test_secured_layout_pairs_h2o_and_the_watcher(deployment: Deployment) -> None:
    """A login service with the watcher's credentials, -jks with a CA, and no password shown."""
    settings = settings_of(deployment)
    args = parse_h2o_args(deployment.args())
    assert args.login == "-hash_login"
    assert args.jks is not None
    assert not args.jks_pass_given
    assert settings.rest.user is not None
    assert settings.rest.password_file is not None
    assert settings.rest.ca_file is not None
    assert settings.rest.jks_password_file is not None
    env = deployment.pod_env("10.42.0.12")
    # A password is only ever a file's name: no variable holds one.
    assert not [name for name in env if "PASS" in name and not name.endswith("_FILE")]
