"""Shared machinery of the benchmarks: statistics, tables, simulated clusters, kubelet pollers.

Two ways of running N simulated pods (network namespaces from ``k8s_sim.pods``) are compared:

- ``Impl.OURS``: each pod runs ``h2o-k8s-discovery run -- -ice_root <ice>``, which serves the
  probes, polls the headless Service's A records, writes a flatfile and starts the JVM;
- ``Impl.REFERENCE``: each pod starts the same h2o.jar directly, with H2O's four Kubernetes
  variables in its environment, which switches on H2O's built-in discovery (ANCHORS section 1).

Both find their peers through one embedded DNS server in the root namespace on the pods' gateway
(port 53, where the pods' resolv.conf points). It publishes the Service both ways at once: A
records for ours, SRV records ``(0, 0, 54321, h2o-<i>.<service>)`` plus an A record per target
for H2O's lookup, which asks SRV on the bare name (ANCHORS section 9). It does so in one of two
``DnsMode``s: every pod's records at once (a Service with ``publishNotReadyAddresses: true``), or
only while the pod's readiness probe passes (the seed manifest's Service), driven by one
kubelet-like prober per pod (``bench._kubelet``).

Ours gets its environment in one of two ``EnvMode``s: *tuned* (H2O's four variables plus POD_IP,
a cloud name and early start, as ``docker/kubernetes/h2o-cluster.yaml`` sets), or *seed*: exactly
what ``docker/kubernetes/h2o-compatible.yaml`` gives the container, plus only what simulated pods
on one machine cannot share (the jar's path, JAVA_OPTS with the pod's own temp dir, the flatfile
and ice paths under the pod's workdir).

The non-obvious decision: observers only record. One thread per pod and endpoint polls at a fixed
interval, like a kubelet, and appends ``(seconds since start, value)``; every verdict ("exactly
one leader, held 5 s", flaps, reaction times) is computed afterwards from the merged timeline by
pure functions, so judging never delays polling and the rules are easy to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import enum
import json
import multiprocessing
import os
import re
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from subprocess import Popen
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from bench._kubelet import Endpoints, PodAddress, ProbeSpec, ReadinessProber
from h2o_k8s_discovery.cloud.status import CloudStatus
from h2o_k8s_discovery.commands.demo_dns import DnsServer
from h2o_k8s_discovery.jvm.jar import ensure_h2o_jar
from k8s_sim.dns import ServerThread
from k8s_sim.manifests import Deployment, deployment
from k8s_sim.pods import H2O_PORT, Pod, PodNetwork, PodNetworkError

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
ENTRYPOINT = REPO / ".venv" / "bin" / "h2o-k8s-discovery"
#: The headless Service, as in H2O's manifests for namespace h2o-statefulset.
SERVICE = "h2o-service.h2o-statefulset.svc.cluster.local"
#: H2O_KUBERNETES_API_PORT for both implementations.
API_PORT = 8081
LEADER_PATH = "/kubernetes/isLeaderNode"
STATUS_PATH = "/status"
CLOUD_PATH = "/3/Cloud?skip_ticks=true"
#: JVM heap per pod (3 pods on this 24 GB, 2-core machine).
XMX = "512m"

HttpResult = tuple[int, bytes] | None
Clock = Callable[[], float]


# --- output --------------------------------------------------------------------------------------


def progress(message: str) -> None:
    """A progress line on stderr (stdout carries only the tables)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; cells are rendered with ``str``."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_note() -> str:
    """One line describing the load the numbers were taken under."""
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        f"at {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )


# --- statistics ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    """Median, extremes and mean of a non-empty sample."""

    count: int
    median: float
    low: float
    high: float
    mean: float

    def span(self, scale: float = 1.0, digits: int = 1) -> str:
        """``"min-max"`` scaled, e.g. ``"7.6-9.8"``."""
        return f"{self.low * scale:.{digits}f}-{self.high * scale:.{digits}f}"


def summarize(values: Sequence[float]) -> Summary | None:
    """The summary of ``values``, ``None`` when there are none."""
    if not values:
        return None
    return Summary(
        count=len(values),
        median=statistics.median(values),
        low=min(values),
        high=max(values),
        mean=statistics.fmean(values),
    )


def fmt(value: float | None, digits: int = 1, scale: float = 1.0) -> str:
    """A number with ``digits`` decimals, or an em dash for "no value"."""
    return "—" if value is None else f"{value * scale:.{digits}f}"


# --- the embedded DNS server in a process of its own ---------------------------------------------


def _serve_dns(records: dict[str, list[str]], conn: Connection) -> None:
    asyncio.run(_serve_dns_until_told(records, conn))


async def _serve_dns_until_told(records: dict[str, list[str]], conn: Connection) -> None:
    async with DnsServer("127.0.0.1") as server:
        for name, addresses in records.items():
            server.set_records(name, a=addresses)
        conn.send(server.port)
        # Any message (or the parent going away) stops the server.
        with contextlib.suppress(EOFError, OSError):
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)


@contextlib.contextmanager
def dns_server_process(records: Mapping[str, Sequence[str]]) -> Iterator[tuple[str, int]]:
    """Run ``DnsServer`` on 127.0.0.1 in a child process serving ``records`` (name -> A).

    A process of its own, like dnsmasq, so that the client's CPU time is the client's alone and
    server and client do not take turns on one interpreter lock.
    """
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    payload = {name: list(addresses) for name, addresses in records.items()}
    process = context.Process(target=_serve_dns, args=(payload, child), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the embedded DNS server process did not report its port in 60 s")
        port = int(parent.recv())
        yield "127.0.0.1", port
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()
        parent.close()


# --- observation ---------------------------------------------------------------------------------


class Poller(threading.Thread, Generic[T]):
    """Polls ``GET http://<pod>:<port><path>`` every ``interval`` s; records ``(t, parse(result))``.

    ``result`` is ``(status, body)`` or ``None`` (refused, timed out, broken). Ticks are fixed, as
    a kubelet's period; a slow answer delays the next poll only when it overruns the period.
    """

    def __init__(
        self,
        pod: Pod,
        port: int,
        path: str,
        *,
        interval: float,
        parse: Callable[[HttpResult], T],
        clock: Clock,
        timeout: float = 1.0,
    ) -> None:
        super().__init__(name=f"poll-{pod.name}-{port}{path}", daemon=True)
        self.pod = pod
        self.port = port
        self.path = path
        self.interval = interval
        self.parse = parse
        self.clock = clock
        self.timeout = timeout
        self.samples: list[tuple[float, T]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self._halt.is_set():
            result = self.pod.http_get(self.port, self.path, timeout=self.timeout)
            self.samples.append((self.clock(), self.parse(result)))
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:
                next_at, delay = time.monotonic(), 0.0
            self._halt.wait(delay)

    def halt(self) -> None:
        self._halt.set()

    def snapshot(self) -> list[tuple[float, T]]:
        return list(self.samples)


def status_code(result: HttpResult) -> int | None:
    """The HTTP status, ``None`` when nothing answered."""
    return None if result is None else result[0]


@dataclass(frozen=True, slots=True)
class CloudView:
    """What one ``/3/Cloud`` answer says about formation."""

    formed: bool
    is_leader: bool


def cloud_view(size: int) -> Callable[[HttpResult], CloudView | None]:
    """A parser of ``/3/Cloud``; ``None`` for no answer, a non-200 (403 on H2O's non-leaders
    in Kubernetes mode) or an odd body."""

    def parse(result: HttpResult) -> CloudView | None:
        if result is None or result[0] != 200:
            return None
        try:
            status = CloudStatus.parse(json.loads(result[1]))
        except ValueError:
            return None
        return CloudView(status.has_formed(size), status.is_leader)

    return parse


@dataclass(frozen=True, slots=True)
class StatusView:
    """What our entrypoint's ``/status`` says."""

    phase: str
    ready: int
    is_leader: bool | None
    jvm_pid: int | None


def status_view(result: HttpResult) -> StatusView | None:
    """A parser of our ``/status``; ``None`` for no answer or an odd body."""
    if result is None or result[0] != 200:
        return None
    try:
        data: dict[str, Any] = json.loads(result[1])
        return StatusView(
            phase=str(data["phase"]),
            ready=int(data["ready"]),
            is_leader=data.get("is_leader"),
            jvm_pid=data.get("jvm_pid"),
        )
    except (ValueError, KeyError, TypeError):
        return None


# --- judging timelines (pure) --------------------------------------------------------------------

State = tuple[T | None, ...]


def merge(timelines: Sequence[Sequence[tuple[float, T]]]) -> list[tuple[float, State[T]]]:
    """The combined state of all pods at each moment one of them changed value.

    A pod's value is its latest sample (``None`` before its first one).
    """
    events = sorted(
        ((t, index, value) for index, line in enumerate(timelines) for t, value in line),
        key=lambda event: (event[0], event[1]),
    )
    current: list[T | None] = [None] * len(timelines)
    states: list[tuple[float, State[T]]] = []
    for t, index, value in events:
        if current[index] == value and states:
            continue
        current[index] = value
        states.append((t, tuple(current)))
    return states


def observed_until(timelines: Sequence[Sequence[tuple[float, object]]]) -> float:
    """The time up to which every pod has been observed (its latest sample, the earliest one)."""
    if not timelines or any(not line for line in timelines):
        return 0.0
    return min(line[-1][0] for line in timelines)


def first_stable(
    states: Sequence[tuple[float, State[T]]],
    holds: Callable[[State[T]], bool],
    hold: float,
    end: float,
) -> float | None:
    """The first moment ``holds`` became true and then stayed true for ``hold`` s (to ``end``)."""
    start: float | None = None
    for t, state in states:
        if t > end:
            break
        if holds(state):
            if start is None:
                start = t
        elif start is not None:
            if t - start >= hold:
                return start
            start = None
    if start is not None and end - start >= hold:
        return start
    return None


def first_true(
    states: Sequence[tuple[float, State[T]]], holds: Callable[[State[T]], bool]
) -> float | None:
    """The first moment ``holds`` was true, if ever."""
    return next((t for t, state in states if holds(state)), None)


def one_leader(state: State[int]) -> bool:
    """Exactly one pod answers 200 and every other one 404."""
    return sorted(code or 0 for code in state) == [200] + [404] * (len(state) - 1)


def ready_set(state: State[int]) -> frozenset[int]:
    """The pods answering 200."""
    return frozenset(i for i, code in enumerate(state) if code == 200)


def count_flaps(states: Sequence[tuple[float, State[int]]], end: float) -> int:
    """Changes of the set of 200-pods, counted once every pod has answered at least once."""
    answered: set[int] = set()
    previous: frozenset[int] | None = None
    flaps = 0
    for t, state in states:
        if t > end:
            break
        answered |= {i for i, code in enumerate(state) if code is not None}
        if len(answered) < len(state):
            continue
        current = ready_set(state)
        if previous is not None and current != previous:
            flaps += 1
        previous = current
    return flaps


def count_double_ready(states: Sequence[tuple[float, State[int]]], after: float, end: float) -> int:
    """Episodes with two or more pods answering 200 at once, strictly after ``after``."""
    episodes = 0
    inside = False
    for t, state in states:
        if t > end:
            break
        double = len(ready_set(state)) >= 2
        if t > after and double and not inside:
            episodes += 1
        inside = double
    return episodes


# --- clusters ------------------------------------------------------------------------------------


class Impl(enum.Enum):
    OURS = "ours"
    REFERENCE = "reference"


class EnvMode(enum.Enum):
    """What ours is given besides what pods on one machine cannot share."""

    #: H2O's four variables, POD_IP, a cloud name and early start (``h2o-cluster.yaml``).
    TUNED = "tuned"
    #: Only what the seed manifest ``h2o-compatible.yaml`` sets: H2O's four variables.
    SEED = "seed"


class DnsMode(enum.Enum):
    """When a pod's records appear in the headless Service."""

    #: Every pod's records from the start (``publishNotReadyAddresses: true``).
    AT_ONCE = "records at once"
    #: Only while its readiness probe passes (the seed's Service).
    READY_GATED = "ready-gated"


#: The manifest whose env, probe and replicas the seed mode uses.
SEED_MANIFEST = "h2o-compatible.yaml"


def seed_manifest() -> Deployment:
    """The seed StatefulSet; its Service name and API port must be the bench's."""
    seed = deployment(SEED_MANIFEST)
    env = seed.pod_env("198.18.0.1")
    if env.get("H2O_KUBERNETES_SERVICE_DNS") != SERVICE or env.get(
        "H2O_KUBERNETES_API_PORT"
    ) != str(API_PORT):
        raise RuntimeError(
            f"{SEED_MANIFEST} sets H2O_KUBERNETES_SERVICE_DNS="
            f"{env.get('H2O_KUBERNETES_SERVICE_DNS')!r} and H2O_KUBERNETES_API_PORT="
            f"{env.get('H2O_KUBERNETES_API_PORT')!r}; the bench serves {SERVICE} and probes "
            f"port {API_PORT}: change bench._common.SERVICE and API_PORT to match"
        )
    return seed


def seed_probe() -> ProbeSpec:
    """The seed container's readiness probe, with Kubernetes' defaults filled in."""
    return ProbeSpec.from_container(seed_manifest().container)


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """One run's setup."""

    impl: Impl
    size: int = 3
    #: Seconds after start at which the last pod's records are published (``None``: at start).
    late_last: float | None = None
    env: EnvMode = EnvMode.TUNED
    dns: DnsMode = DnsMode.AT_ONCE
    #: The pods' /24 (``None``: the first free one). The same addresses in every run give
    #: every run the same H2O node hashes, and H2O's heartbeat thread picks the tick of its
    #: one-off CPU benchmark (Linpack, memory bandwidth) by that hash: a fixed subnet keeps
    #: that stall at the same heartbeat for ours and the reference.
    subnet: str | None = None
    #: Appended to H2O's arguments in both implementations, for diagnosis (``-log_level DEBUG``).
    h2o_args: tuple[str, ...] = ()


def h2o_jar() -> Path:
    """The cached h2o.jar, read once so that the first run does not pay for a cold page cache."""
    jar = ensure_h2o_jar(progress=False)
    with jar.open("rb") as stream:
        while stream.read(1 << 24):
            pass
    return jar


def target_name(pod: PodAddress) -> str:
    return f"{pod.name}.{SERVICE}"


def publish(server: DnsServer, pods: Sequence[PodAddress]) -> None:
    """The headless Service with ``pods`` in it: A records, SRV records and the targets' A."""
    for pod in pods:
        server.set_records(target_name(pod), a=[pod.ip])
    server.set_records(
        SERVICE,
        a=[pod.ip for pod in pods],
        srv=[(0, 0, H2O_PORT, target_name(pod)) for pod in pods],
    )


def publish_ready(
    server: DnsServer, ready: Sequence[PodAddress], pods: Sequence[PodAddress]
) -> None:
    """The Service holding only ``ready`` of ``pods``; NXDOMAIN when none is, as in Kubernetes."""
    names = {pod.name for pod in ready}
    for pod in pods:
        if pod.name not in names:
            server.remove(target_name(pod))
    if ready:
        publish(server, ready)
    else:
        server.remove(SERVICE)


def _k8s_variables(size: int) -> dict[str, str]:
    return {
        "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
        "H2O_NODE_LOOKUP_TIMEOUT": "180",
        "H2O_NODE_EXPECTED_COUNT": str(size),
        "H2O_KUBERNETES_API_PORT": str(API_PORT),
    }


def ours_command(pod: Pod) -> list[str]:
    return [str(ENTRYPOINT), "run", "--", "-ice_root", str(pod.ice_root)]


def ours_environment(pod: Pod, jar: Path, cloud: str, size: int) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **_k8s_variables(size),
        "H2O_JAR": str(jar),
        "JAVA_OPTS": f"-Xmx{XMX} -Djava.io.tmpdir={pod.tmpdir}",
        "H2O_FLATFILE": str(pod.workdir / "flatfile"),
        "POD_IP": pod.ip,
        "H2O_CLOUD_NAME": cloud,
        # As in docker/kubernetes/h2o-cluster.yaml: H2O boots while the peers are looked up.
        "H2O_JVM_EARLY_START": "true",
    }


def seed_environment(pod: Pod, jar: Path) -> dict[str, str]:
    """The seed manifest's env (no POD_IP, nothing of ours) plus the per-pod paths."""
    return {
        **seed_manifest().pod_env(pod.ip),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "H2O_JAR": str(jar),
        "JAVA_OPTS": f"-Xmx{XMX} -Djava.io.tmpdir={pod.tmpdir}",
        "H2O_FLATFILE": str(pod.workdir / "flatfile"),
    }


def seed_command(pod: Pod) -> list[str]:
    """``run`` with the seed container's args, paths under /tmp moved into the pod's workdir
    (the seed has none: then only the pod's own ice dir)."""
    args = [
        arg.replace("/tmp/", f"{pod.workdir}/", 1) if arg.startswith("/tmp/") else arg
        for arg in seed_manifest().args()
    ]
    return [str(ENTRYPOINT), "run", "--", *(args or ["-ice_root", str(pod.ice_root)])]


def reference_command(pod: Pod, jar: Path, cloud: str) -> list[str]:
    return [
        "java",
        f"-Xmx{XMX}",
        f"-Djava.io.tmpdir={pod.tmpdir}",
        "-jar",
        str(jar),
        "-ice_root",
        str(pod.ice_root),
        "-name",
        cloud,
    ]


def reference_environment(size: int) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **_k8s_variables(size)}


class Cluster:
    """N fresh pods of one implementation behind one DNS server; a context manager.

    Entering creates the pods (fresh work, ice and temp dirs) and the DNS server; ``start()``
    sets the clock's zero and spawns every pod's process; leaving stops the pollers, the DNS
    server and, through ``PodNetwork``, every process, namespace and directory.
    """

    def __init__(self, spec: ClusterSpec, jar: Path) -> None:
        self.spec = spec
        self.jar = jar
        self.cloud = f"bench-{uuid.uuid4().hex[:10]}"
        self.pods: list[Pod] = []
        self.processes: list[Popen[bytes]] = []
        self.pollers: list[Poller[Any]] = []
        self.t0 = 0.0
        #: ``time.time()`` at ``t0``, to place the JVMs' wall-clock log lines on the timeline.
        self.wall0 = 0.0
        self._stack = contextlib.ExitStack()
        self._late: threading.Timer | None = None
        self._dns: DnsServer | None = None
        #: Ready-gated DNS only: the Service's endpoints and one prober per pod.
        self.endpoints: Endpoints | None = None
        self.probers: list[ReadinessProber] = []

    def __enter__(self) -> Self:
        try:
            net = self._enter_network()
            self.pods = [net.add_pod(f"h2o-{i}") for i in range(self.spec.size)]
            self._dns = self._stack.enter_context(ServerThread(DnsServer(net.gateway, 53)))
            self._stack.callback(self._halt_observers)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    def _enter_network(self) -> PodNetwork:
        """The requested subnet when it is free, else the first free one (another harness on
        this machine may hold it)."""
        if self.spec.subnet is not None:
            try:
                return self._stack.enter_context(PodNetwork(self.spec.subnet, stop_grace=5.0))
            except PodNetworkError as err:
                progress(f"subnet {self.spec.subnet} not free ({err}); using the first free one")
        return self._stack.enter_context(PodNetwork(stop_grace=5.0))

    @property
    def dns(self) -> DnsServer:
        if self._dns is None:
            raise RuntimeError("the Cluster has not been entered")
        return self._dns

    def clock(self) -> float:
        """Seconds since ``start()``."""
        return time.monotonic() - self.t0

    def start(self) -> None:
        """Publish the Service (all pods, all but the last, or none when ready-gated), then start
        every pod (and, when ready-gated, its prober, counting from the pod's start)."""
        late = self.spec.late_last
        gated = self.spec.dns is DnsMode.READY_GATED
        probe = seed_probe() if gated else None
        if gated:
            self.endpoints = Endpoints(self.dns, self.pods, self.clock, publish_ready)
            publish_ready(self.dns, [], self.pods)
        else:
            publish(self.dns, self.pods if late is None else self.pods[:-1])
        self.t0, self.wall0 = time.monotonic(), time.time()
        for index, pod in enumerate(self.pods):
            self.processes.append(pod.spawn(*self._command(pod), log_path=self.log_path(pod)))
            if self.endpoints is not None and probe is not None:
                self.probers.append(
                    ReadinessProber(
                        pod,
                        index,
                        probe,
                        self.endpoints,
                        started=time.monotonic(),
                        clock=self.clock,
                    )
                )
        for prober in self.probers:
            prober.start()
        if late is not None and not gated:
            delay = max(0.0, self.t0 + late - time.monotonic())
            self._late = threading.Timer(delay, publish, (self.dns, self.pods))
            self._late.daemon = True
            self._late.start()

    def _command(self, pod: Pod) -> tuple[list[str], dict[str, str]]:
        argv, env = self._base_command(pod)
        return [*argv, *self.spec.h2o_args], env

    def _base_command(self, pod: Pod) -> tuple[list[str], dict[str, str]]:
        seed = self.spec.env is EnvMode.SEED
        if self.spec.impl is Impl.OURS:
            if seed:
                return seed_command(pod), seed_environment(pod, self.jar)
            env = ours_environment(pod, self.jar, self.cloud, self.spec.size)
            return ours_command(pod), env
        if seed:
            # The same four variables from the manifest, in the JVM's own environment.
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            env |= seed_manifest().pod_env(pod.ip)
            return reference_command(pod, self.jar, self.cloud), env
        return reference_command(pod, self.jar, self.cloud), reference_environment(self.spec.size)

    @staticmethod
    def log_path(pod: Pod) -> Path:
        return pod.workdir / "pod.log"

    def observe(
        self,
        port: int,
        path: str,
        interval: float,
        parse: Callable[[HttpResult], T],
        timeout: float = 1.0,
    ) -> list[Poller[T]]:
        """Start one poller per pod; they are stopped when the cluster is left."""
        pollers = [
            Poller(
                pod, port, path, interval=interval, parse=parse, clock=self.clock, timeout=timeout
            )
            for pod in self.pods
        ]
        for poller in pollers:
            poller.start()
        self.pollers.extend(pollers)
        return pollers

    def _halt_observers(self) -> None:
        if self._late is not None:
            self._late.cancel()
        for poller in self.pollers:
            poller.halt()
        for prober in self.probers:
            prober.halt()
        for thread in [*self.pollers, *self.probers]:
            thread.join(5)

    def failure(self) -> str | None:
        """Why the run cannot go on (a pod's process exited), with its log's tail; else None."""
        for pod, process in zip(self.pods, self.processes, strict=True):
            if process.poll() is not None:
                return f"{pod.name} exited with status {process.returncode}:\n" + log_tail(
                    self.log_path(pod)
                )
        return None

    def log_tails(self, lines: int = 15) -> str:
        return "\n".join(
            f"--- {pod.name}\n{log_tail(self.log_path(pod), lines)}" for pod in self.pods
        )

    def h2o_events(self) -> list[H2OEvents]:
        """What each pod's H2O logged, on this run's timeline (call before leaving)."""
        return [h2o_events(self.log_path(pod), self.wall0) for pod in self.pods]


@dataclass(frozen=True, slots=True)
class H2OEvents:
    """Moments (seconds since start) read from one H2O log."""

    #: "H2O started in N ms": the REST API and everything else is up.
    started: float | None
    #: Every "Cloud of size N formed": (moment, N).
    clouds: tuple[tuple[float, int], ...]

    def first_cloud_of(self, size: int) -> float | None:
        return next((t for t, n in self.clouds if n == size), None)


_H2O_LINE = re.compile(
    r"^(\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) .* INFO water\.default: "
    r"(?:H2O started in (\d+)ms|Cloud of size (\d+) formed)"
)


def h2o_events(path: Path, wall0: float) -> H2OEvents:
    """Parse H2O's own log lines (local time, ``MM-DD HH:MM:SS.mmm``) in ``path``."""
    year = time.localtime(wall0).tm_year
    started: float | None = None
    clouds: list[tuple[float, int]] = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return H2OEvents(None, ())
    for line in text.splitlines():
        match = _H2O_LINE.match(line)
        if match is None:
            continue
        stamp = datetime.datetime.strptime(f"{year}-{match[1]}", "%Y-%m-%d %H:%M:%S.%f")
        at = stamp.timestamp() - wall0
        if match[2] is not None and started is None:
            started = at
        elif match[3] is not None:
            clouds.append((at, int(match[3])))
    return H2OEvents(started, tuple(clouds))


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"<no log: {err}>"


def timelines(pollers: Sequence[Poller[T]]) -> list[list[tuple[float, T]]]:
    """A consistent copy of every poller's samples so far."""
    return [poller.snapshot() for poller in pollers]


def wait_until(
    condition: Callable[[], T | None],
    cluster: Cluster,
    deadline: float,
    step: float = 0.1,
) -> T:
    """Check ``condition`` every ``step`` s until it gives a value; raise ``RunFailed`` when a
    pod dies or ``deadline`` (seconds since start) passes."""
    while True:
        value = condition()
        if value is not None:
            return value
        if (why := cluster.failure()) is not None:
            raise RunFailed(why)
        if cluster.clock() > deadline:
            raise RunFailed(f"no result within {deadline:.0f} s\n{cluster.log_tails()}")
        time.sleep(step)


class RunFailed(Exception):
    """One run did not reach its goal; the message says why (with the pods' log tails)."""


def proc_rss_mb(pid: int, field: str = "VmRSS") -> float | None:
    """``field`` (VmRSS, RssAnon, RssFile) of ``pid`` in MB (10^6 bytes), ``None`` if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        return None
    return None


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` in seconds, ``None`` when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5); fields[0] is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
