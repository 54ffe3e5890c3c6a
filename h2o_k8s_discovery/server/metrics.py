"""``/metrics`` in the OpenMetrics text format, read from the ``NodeState`` at scrape time.

A custom collector instead of counters updated alongside the state: the numbers cannot drift
from what ``/status`` says, and a scrape costs no more than reading a few attributes.

Rendered by ``prometheus_client.openmetrics.exposition``, never by the package's top level:
``import prometheus_client`` imports its ``exposition`` module (the HTTP server and the push
client), which imports ``ssl`` and ``urllib.request``'s HTTPS handler, and ``run`` and
``sidecar`` keep OpenSSL out (``footprint.py``). In such a process the package is entered
without running its ``__init__`` (``_enter_without_exposition``): the modules used here need
nothing but each other and the standard library. OpenMetrics is Prometheus' own text format
(Prometheus negotiates it first); the samples are the same as in the older text format.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator


def _enter_without_exposition() -> None:
    """Register ``prometheus_client`` as a bare package, so that importing its submodules does
    not run its ``__init__``; only where ``ssl`` is kept out and nothing imported it yet."""
    if "prometheus_client" in sys.modules or sys.modules.get("ssl", ...) is not None:
        return
    spec = importlib.util.find_spec("prometheus_client")
    if spec is None:
        return  # not installed: the import below says so
    sys.modules["prometheus_client"] = importlib.util.module_from_spec(spec)


_enter_without_exposition()

# After the package was entered above: these need neither ssl nor the exposition module.
from prometheus_client.metrics_core import (  # noqa: E402
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.openmetrics.exposition import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    generate_latest,
)
from prometheus_client.registry import Collector, CollectorRegistry  # noqa: E402

from h2o_k8s_discovery.server.node_state import NodeState, Phase  # noqa: E402

#: The Content-Type of ``render``'s output.
CONTENT_TYPE = CONTENT_TYPE_LATEST

PREFIX = "h2o_k8s_discovery"


class NodeStateCollector(Collector):
    """Turns one ``NodeState`` into metric families."""

    def __init__(self, state: NodeState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        state = self.state
        yield StateSetMetricFamily(
            f"{PREFIX}_phase",
            "Lifecycle phase of this pod's entrypoint.",
            {phase.value: phase is state.phase for phase in Phase},
        )
        yield _gauge(
            "lookup_duration_seconds", "Seconds the last lookup took.", state.lookup_seconds
        )
        yield _counter("dns_polls", "DNS polls that got an answer.", state.dns_polls)
        errors = CounterMetricFamily(
            f"{PREFIX}_dns_errors", "DNS polls that failed, by kind.", labels=["kind"]
        )
        for kind, count in sorted(state.dns_errors.items()):
            errors.add_metric([kind], count)
        yield errors
        yield _gauge("peers", "Peers in the current set.", len(state.peers))
        yield _gauge(
            "cloud_size",
            "Members of the cloud the local H2O node reports.",
            None if state.cloud is None else state.cloud.cloud_size,
        )
        formed = state.phase is Phase.FORMED
        yield _gauge(
            "leader", "1 on the leader once the cloud has formed.", int(formed and state.is_leader)
        )
        yield _gauge(
            "ready", "1 while /kubernetes/isLeaderNode answers 200.", int(state.readiness() == 200)
        )
        yield _gauge(
            "cloud_damaged", "1 while a formed cloud is not whole.", int(state.damage is not None)
        )
        yield _counter("jvm_starts", "H2O JVMs started by this entrypoint.", state.jvm_starts)
        yield _gauge(
            "jvm_exit_status", "Exit status of the H2O JVM once it ended.", state.exit_status
        )


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{PREFIX}_{name}", documentation)
    if value is not None:
        family.add_metric([], value)
    return family


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def render(state: NodeState) -> bytes:
    """The OpenMetrics text exposition of ``state``'s metrics (``CONTENT_TYPE``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeStateCollector(state))
    body: bytes = generate_latest(registry)  # type: ignore[no-untyped-call]
    return body
