"""The image, built for real from ``docker/Dockerfile`` and run in a container runtime.

A private dockerd builds the Dockerfile with BuildKit (no ``# syntax=`` frontend image, no
registry: the external bases are stand-ins from Debian, ``tests/image/standin.py``). The image
goes through a tarball into podman, as a registry hands layers to a node, and three containers
of it run in simulated pods (``k8s_sim/pods.py``): each in its pod's network namespace, on a
read-only root with a tmpfs on ``/tmp``, a memory limit, the image's own user, and the hostname,
``/etc/hosts`` entry and DNS settings a kubelet writes. Once with the environment of H2O's own
manifest only (the image's CMD), once with the env and args of ours.

The one non-obvious decision: the image is built once per module and shared by both runs; a
build that takes the whole CI budget would be the first thing to cut, so the time the image part
took is printed, and the stand-in base is cached between runs.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from h2o_k8s_discovery.jvm.jar import ensure_h2o_jar
from k8s_sim.manifests import Deployment, deployment
from k8s_sim.pods import Pod, PodNetwork, requires_root
from tests.image.engines import (
    Docker,
    Podman,
    engines,
    inherited_ulimits,
    install_missing,
    private_interfaces,
)
from tests.image.standin import prune, stand_ins
from tests.support.dns_server import ThreadedDnsServer
from tests.support.kubelet import Kubelet, get_json

pytestmark = [pytest.mark.slow, pytest.mark.root, requires_root]

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"
SEED = "h2o-compatible.yaml"
OURS = "h2o-cluster.yaml"
#: The image name the manifests run; the private daemon and podman store hold nothing else.
IMAGE = deployment(OURS).container["image"]
#: Each container's limit: the image's MaxRAMPercentage=50 gives H2O a 768 MB heap.
MEMORY = "1536m"
FORMATION_DEADLINE = 180.0
#: The image part (install, stand-in, build, tarball, load) must stay well inside CI's budget.
IMAGE_BUDGET = 15 * 60.0


@dataclass
class BuiltImage:
    """The image, loaded into podman, and how long getting it there took, step by step."""

    podman: Podman
    ref: str
    user: str
    steps: dict[str, float] = field(default_factory=dict)
    interfaces_before: set[str] = field(default_factory=set)


def build_context(target: Path) -> None:
    """The checkout as it is now (less what git ignores), and the cached jar as ``./h2o.jar``."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        # Hidden directories (a local jar cache, say) hold nothing the build uses.
        if source.is_file() and not (len(Path(name).parts) > 1 and name.startswith(".")):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    jar = ensure_h2o_jar(progress=False)
    try:
        (target / "h2o.jar").hardlink_to(jar)
    except OSError:  # another file system: a copy
        shutil.copy2(jar, target / "h2o.jar")


def _timed(steps: dict[str, float], name: str, started: float) -> float:
    now = time.monotonic()
    steps[name] = now - started
    return now


@pytest.fixture(scope="module")
def image(pytestconfig: pytest.Config) -> Iterator[BuiltImage]:
    """The image built from the Dockerfile by BuildKit and loaded into podman via a tarball."""
    interfaces_before = private_interfaces()
    steps: dict[str, float] = {}
    started = mark = time.monotonic()
    install_missing()
    mark = _timed(steps, "install packages", mark)
    bases = stand_ins(DOCKERFILE)
    prune(list(bases.values()))
    made = [name for name, stand_in in bases.items() if stand_in.ensure()]
    mark = _timed(steps, f"stand-in bases ({len(made)} made, the rest cached)", mark)
    with engines() as (docker, podman), tempfile.TemporaryDirectory(prefix="h2o-image-") as tmp:
        mark = _timed(steps, "start dockerd", mark)
        for name, stand_in in bases.items():
            stand_in.load_into(docker, name)
        mark = _timed(steps, "import stand-ins", mark)
        context = Path(tmp) / "context"
        context.mkdir()
        build_context(context)
        build(docker, context)
        mark = _timed(steps, "docker build", mark)
        tarball = Path(tmp) / "image.tar"
        docker("save", "--output", str(tarball), IMAGE, timeout=600)
        tarball_bytes = tarball.stat().st_size
        mark = _timed(steps, "docker save", mark)
        podman("load", "--input", str(tarball), timeout=600)
        tarball.unlink()
        _timed(steps, "podman load", mark)
        total = time.monotonic() - started
        user = podman("image", "inspect", "--format", "{{.Config.User}}", IMAGE).stdout.strip()
        report = ", ".join(f"{name} {took:.1f}s" for name, took in steps.items())
        layers = podman("history", "--format", "{{.Size}}\t{{.CreatedBy}}", IMAGE).stdout
        with _uncaptured(pytestconfig):
            print(
                f"\nimage part took {total:.1f}s ({report}); tarball {tarball_bytes / 1e6:.0f} MB"
                "\nlayers, newest first:\n"
                + "\n".join(f"  {line[:110]}" for line in layers.splitlines() if line.strip())
            )
        assert total < IMAGE_BUDGET, f"the image part took {total:.0f}s: {report}"
        assert private_interfaces() <= interfaces_before, "an engine made a network"
        yield BuiltImage(podman, IMAGE, user, steps, interfaces_before)


def build(docker: Docker, context: Path) -> None:
    """``docker build`` of the real Dockerfile, the jar from the context, on the host network."""
    docker(
        "build",
        "--network=host",
        "--progress=plain",
        "--file", str(context / "docker" / "Dockerfile"),
        "--build-arg", "H2O_JAR_SOURCE=local",
        "--tag", IMAGE,
        str(context),
        timeout=900,
    )  # fmt: skip


class _uncaptured:
    """Output straight to the terminal, past pytest's capture (for the timing line)."""

    def __init__(self, config: pytest.Config) -> None:
        self._capture = config.pluginmanager.getplugin("capturemanager")

    def __enter__(self) -> None:
        if self._capture is not None:
            self._capture.suspend_global_capture(in_=False)

    def __exit__(self, *exc: object) -> None:
        if self._capture is not None:
            self._capture.resume_global_capture()


# --- the pods -----------------------------------------------------------------------------------


@dataclass
class Cluster:
    """The containers of one manifest, one per simulated pod."""

    image: BuiltImage
    manifest: Deployment
    network: PodNetwork
    pods: list[Pod]

    def name(self, pod: Pod) -> str:
        return pod.netns

    def podman(self, *args: str, timeout: float = 120) -> str:
        return self.image.podman(*args, timeout=timeout).stdout

    def kubelet(self) -> Kubelet:
        probe = self.manifest.probe("readinessProbe")
        assert probe is not None
        return Kubelet(self.pods, probe[1], probe[0])

    def run_argv(self, pod: Pod) -> list[str]:
        """``podman run`` of one pod's container, as the kubelet would set it up."""
        headless = self.manifest.headless_service()["metadata"]["name"]
        fqdn = f"{pod.name}.{headless}.{self.network.search[0]}"
        env = [f"--env={key}={value}" for key, value in self.manifest.pod_env(pod.ip).items()]
        search = [f"--dns-search={domain}" for domain in self.network.search]
        return [
            "run", "--detach", f"--name={self.name(pod)}",
            f"--network=ns:/run/netns/{pod.netns}",
            # readOnlyRootFilesystem with an emptyDir on /tmp, and nothing else writable.
            "--read-only", "--read-only-tmpfs=false", "--tmpfs=/tmp:rw,exec,mode=1777",
            f"--memory={MEMORY}", *inherited_ulimits(), "--runtime=runc",
            f"--hostname={pod.name}",
            f"--add-host={fqdn}:{pod.ip}", f"--add-host={pod.name}:{pod.ip}",
            f"--dns={self.network.gateway}", *search, "--dns-option=ndots:5",
            *env,
            self.image.ref,
            *self.manifest.args(),
        ]  # fmt: skip

    def start(self) -> None:
        for pod in self.pods:
            self.podman(*self.run_argv(pod))

    def logs(self, pod: Pod) -> str:
        done = self.image.podman("logs", self.name(pod), check=False)
        return done.stdout + done.stderr

    def records(self, pod: Pod) -> list[dict[str, Any]]:
        """The entrypoint's JSON log records (H2O's own lines are not JSON)."""
        found = []
        for line in self.logs(pod).splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return found

    def tails(self) -> str:
        return "\n".join(
            f"--- {pod.name}\n" + "\n".join(self.logs(pod).splitlines()[-25:]) for pod in self.pods
        )

    def state(self, pod: Pod) -> dict[str, Any]:
        inspected: list[dict[str, Any]] = json.loads(self.podman("inspect", self.name(pod)))
        state: dict[str, Any] = inspected[0]["State"]
        return state


@pytest.fixture(params=[SEED, OURS])
def cluster(request: pytest.FixtureRequest, image: BuiltImage) -> Iterator[Cluster]:
    """Three pods publishing themselves in the headless Service; their containers not started."""
    manifest = deployment(request.param)
    with PodNetwork(namespace=manifest.namespace) as network:
        pods = [network.add_pod(f"h2o-{i}") for i in range(manifest.replicas)]
        service = manifest.pod_env(pods[0].ip)["H2O_KUBERNETES_SERVICE_DNS"]
        with ThreadedDnsServer(network.gateway, 53) as dns:
            dns.set_records(service, a=[pod.ip for pod in pods])
            cluster = Cluster(image, manifest, network, pods)
            try:
                yield cluster
            finally:
                for pod in pods:
                    image.podman("rm", "--force", "--time=0", cluster.name(pod), check=False)


# --- the test -----------------------------------------------------------------------------------


@pytest.mark.timeout(1500)
def test_image_forms_one_cloud_in_podman(cluster: Cluster) -> None:
    """Three containers of the built image form one cloud with one Ready leader, run a job, stop."""
    started = time.monotonic()
    cluster.start()
    kubelet = cluster.kubelet()
    try:
        first = kubelet.wait_for_one_leader(started + FORMATION_DEADLINE)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{cluster.tails()}") from None
    held = kubelet.hold(3.0)
    assert all(sample.codes == first.codes for sample in held), [s.codes for s in held]
    took = first.at - started
    print(f"\n{cluster.manifest.path.name}: one Ready leader {took:.1f}s after podman run")
    leader = cluster.pods[first.leader]

    check_full_cloud(cluster, leader)
    check_own_user(cluster)
    check_startup_cache(cluster)
    run_client_job(leader)
    check_full_cloud(cluster, leader)
    assert kubelet.sample().codes == first.codes, "readiness changed after the job"
    check_nothing_written_outside_tmp(cluster)
    check_stop_within_grace(cluster)
    assert private_interfaces() <= cluster.image.interfaces_before, "an engine made a network"


def check_full_cloud(cluster: Cluster, leader: Pod) -> None:
    """The leader's H2O sees every pod, healthy and agreed; the entrypoint says it leads."""
    cloud = get_json(leader, 54321, "/3/Cloud?skip_ticks=true")
    assert cloud["cloud_size"] == len(cluster.pods), cloud
    assert cloud["consensus"] is True
    assert cloud["cloud_healthy"] is True
    assert sorted(node["ip_port"] for node in cloud["nodes"]) == sorted(
        f"{pod.ip}:54321" for pod in cluster.pods
    )
    api_port = cluster.kubelet().port
    status = get_json(leader, api_port, "/status")
    assert status["is_leader"] is True
    assert status["phase"] == "formed"


def check_own_user(cluster: Cluster) -> None:
    """Every process in every pod runs as the image's USER."""
    uid = int(cluster.image.user.partition(":")[0])
    for pod in cluster.pods:
        pids = pod.pids()
        assert len(pids) >= 2, f"{pod.name}: expected the entrypoint and the JVM, got {pids}"
        for pid in pids:
            status = Path(f"/proc/{pid}/status").read_text()
            uids = next(line for line in status.splitlines() if line.startswith("Uid:"))
            assert uids.split()[1:] == [str(uid)] * 4, f"{pod.name} pid {pid}: {uids}"


def check_startup_cache(cluster: Cluster) -> None:
    """The entrypoint of every pod puts the image's cached native libraries on the JVM's path and
    passes the cache's class archive, and the JVM has it mapped."""
    for pod in cluster.pods:
        records = cluster.records(pod)
        used = [
            r
            for r in records
            if r.get("event") == "startup_cache"
            and any(str(opt).startswith("-Djava.library.path=") for opt in r.get("options", []))
            and any(str(opt).startswith("-XX:SharedArchiveFile=") for opt in r.get("options", []))
        ]
        # The jar's identity is its size and central directory, not its modification time,
        # which ``docker save`` cut to whole seconds on the way into podman; the archive is bound
        # to the jar's path and modification second, which that keeps.
        rejected = [
            r.get("message")
            for r in records
            if "was made for another jar" in r.get("message", "")
            or "class archive is not used" in r.get("message", "")
        ]
        assert used, f"{pod.name}: the start-up cache was not used: {rejected}"
        mapped = [pid for pid in pod.pids() if "classes.jsa" in _maps(pid)]
        assert mapped, f"{pod.name}: no process maps the class archive"


def _maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:  # the process ended meanwhile
        return ""


def run_client_job(leader: Pod) -> None:
    """H2O's own Python client on the leader: upload a frame, train a small GBM."""
    import h2o  # noqa: PLC0415 (a heavy import, only here)
    from h2o.estimators import H2OGradientBoostingEstimator  # noqa: PLC0415

    h2o.no_progress()
    h2o.connect(url=f"http://{leader.ip}:54321", verbose=False)
    try:
        rows = 200
        frame = h2o.H2OFrame(
            {
                "x1": [i % 17 for i in range(rows)],
                "x2": [(i * 7) % 13 for i in range(rows)],
                "y": [float((i % 17) * 2 + (i * 7) % 13) for i in range(rows)],
            }
        )
        assert frame.nrows == rows
        model = H2OGradientBoostingEstimator(ntrees=5, max_depth=3, seed=1)
        model.train(x=["x1", "x2"], y="y", training_frame=frame)
        rmse = model.rmse()
        assert math.isfinite(rmse), rmse
        assert rmse < 10.0, f"the GBM did not learn anything: rmse {rmse}"
    finally:
        h2o.connection().close()


#: What the runtime itself mounts into every container, as a kubelet does (the files, and the
#: directories holding their mount points): the only changes ``podman diff`` may show.
RUNTIME_MOUNTS = frozenset(
    {"/etc", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run", "/run/.containerenv"}
)


def check_nothing_written_outside_tmp(cluster: Cluster) -> None:
    """``podman diff``: nothing in the root filesystem changed but the runtime's own mounts."""
    for pod in cluster.pods:
        lines = cluster.podman("diff", cluster.name(pod)).splitlines()
        changed = {line.split(maxsplit=1)[1] for line in lines if line.strip()}
        assert changed <= RUNTIME_MOUNTS, f"{pod.name} wrote outside /tmp: {lines}"


def check_stop_within_grace(cluster: Cluster) -> None:
    """``podman stop`` with the manifest's grace: each container ends by itself, 143, in time."""
    grace = int(cluster.manifest.pod_spec.get("terminationGracePeriodSeconds", 30))
    started = time.monotonic()
    cluster.podman("stop", f"--time={grace}", *map(cluster.name, cluster.pods), timeout=grace + 60)
    took = time.monotonic() - started
    assert took < grace, f"podman stop took {took:.1f}s, the grace period is {grace}s"
    for pod in cluster.pods:
        state = cluster.state(pod)
        # 143: the JVM ended on SIGTERM and the entrypoint passed it on; 137 would be the KILL.
        assert state["ExitCode"] == 143, f"{pod.name}: {state}\n{cluster.tails()}"
        assert pod.pids() == [], f"{pod.name} still runs {pod.pids()}"
        assert "Traceback" not in cluster.logs(pod)
