"""A kubelet's readiness prober and the endpoint update it drives: ready-gated DNS for the bench.

Without ``publishNotReadyAddresses`` a headless Service lists a pod only while its readiness
probe passes. To reproduce that on simulated pods, one ``ReadinessProber`` thread per pod probes
as the kubelet does (``initialDelaySeconds`` after the container's start, then every
``periodSeconds`` with a ``timeoutSeconds`` limit; ``successThreshold`` consecutive successes
make the pod Ready, ``failureThreshold`` consecutive failures make it not Ready; a status in
200-399 is a success), and ``Endpoints`` republishes the Service's records on every change.

The non-obvious decision: the first probe is sent exactly ``initialDelaySeconds`` after the
pod's start. A real kubelet's prober ticks from when its worker was created (the pod's admission,
before the container starts) and skips ticks that fall inside the initial delay, so its first
probe lands anywhere in ``[delay, delay + period)`` after the container's start; the bench takes
the earliest, which favours neither implementation. The endpoint controller's and the cluster
DNS's own delays (typically well under a second) are not modelled: records change at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from h2o_k8s_discovery.commands.demo_dns import DnsServer
from k8s_sim.pods import Pod

Clock = Callable[[], float]


class PodAddress(Protocol):
    """What the Service's records need of a pod: its name and its address."""

    @property
    def name(self) -> str: ...

    @property
    def ip(self) -> str: ...


Publisher = Callable[[DnsServer, Sequence[PodAddress], Sequence[PodAddress]], None]


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """An ``httpGet`` readiness probe with Kubernetes' defaults for what the manifest leaves out."""

    path: str
    port: int
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def from_container(cls, container: dict[str, Any]) -> ProbeSpec:
        """The ``readinessProbe`` of a container as a manifest gives it."""
        probe = container["readinessProbe"]
        get = probe["httpGet"]
        return cls(
            path=str(get["path"]),
            port=int(get["port"]),
            initial_delay=float(probe.get("initialDelaySeconds", 0)),
            period=float(probe.get("periodSeconds", 10)),
            timeout=float(probe.get("timeoutSeconds", 1)),
            success_threshold=int(probe.get("successThreshold", 1)),
            failure_threshold=int(probe.get("failureThreshold", 3)),
        )


@dataclass(slots=True)
class Readiness:
    """The kubelet's readiness state machine for one container (pure: fed probe outcomes)."""

    success_threshold: int
    failure_threshold: int
    ready: bool = False
    _successes: int = 0
    _failures: int = 0

    def observe(self, success: bool) -> bool:
        """Count one probe outcome; True when it changed ``ready``."""
        if success:
            self._successes, self._failures = self._successes + 1, 0
            if not self.ready and self._successes >= self.success_threshold:
                self.ready = True
                return True
        else:
            self._successes, self._failures = 0, self._failures + 1
            if self.ready and self._failures >= self.failure_threshold:
                self.ready = False
                return True
        return False


def probe_succeeded(status: int | None) -> bool:
    """Kubernetes' httpGet rule: any status from 200 to 399; no answer is a failure."""
    return status is not None and 200 <= status < 400


@dataclass(frozen=True, slots=True)
class EndpointChange:
    """A pod entering (``ready``) or leaving the Service's records, at ``at`` s."""

    at: float
    pod: int
    ready: bool


class Endpoints:
    """The headless Service's records, holding only Ready pods; every change is published."""

    def __init__(
        self,
        dns: DnsServer,
        pods: Sequence[PodAddress],
        clock: Clock,
        publish: Publisher,
    ) -> None:
        self._dns = dns
        self._pods = list(pods)
        self._clock = clock
        self._publish = publish
        self._ready: set[int] = set()
        self._lock = threading.Lock()
        self.changes: list[EndpointChange] = []

    def set_ready(self, index: int, ready: bool) -> None:
        """Add pod ``index`` (position in ``pods``) to the records, or withdraw it."""
        with self._lock:
            if ready:
                self._ready.add(index)
            else:
                self._ready.discard(index)
            published = [pod for i, pod in enumerate(self._pods) if i in self._ready]
            self._publish(self._dns, published, self._pods)
            self.changes.append(EndpointChange(self._clock(), index, ready))

    def snapshot(self) -> list[EndpointChange]:
        with self._lock:
            return list(self.changes)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe the prober sent: when, and the status (``None``: no answer in time)."""

    at: float
    status: int | None


class ReadinessProber(threading.Thread):
    """Probes one pod as a kubelet does and tells ``Endpoints`` when its readiness changes."""

    def __init__(
        self,
        pod: Pod,
        index: int,
        spec: ProbeSpec,
        endpoints: Endpoints,
        *,
        started: float,
        clock: Clock,
    ) -> None:
        super().__init__(name=f"prober-{pod.name}", daemon=True)
        self.pod = pod
        self.index = index
        self.spec = spec
        self.endpoints = endpoints
        #: ``time.monotonic()`` of the container's start.
        self.started = started
        self.clock = clock
        self.results: list[ProbeResult] = []
        self._state = Readiness(spec.success_threshold, spec.failure_threshold)
        self._halt = threading.Event()

    def run(self) -> None:
        next_at = self.started + self.spec.initial_delay
        while not self._halt.wait(max(0.0, next_at - time.monotonic())):
            answer = self.pod.http_get(self.spec.port, self.spec.path, timeout=self.spec.timeout)
            status = None if answer is None else answer[0]
            self.results.append(ProbeResult(self.clock(), status))
            if self._state.observe(probe_succeeded(status)):
                self.endpoints.set_ready(self.index, self._state.ready)
            # Fixed ticks, as the kubelet's ticker: a slow probe does not shift the next ones.
            next_at += self.spec.period
            while next_at < time.monotonic():
                next_at += self.spec.period

    def halt(self) -> None:
        self._halt.set()
