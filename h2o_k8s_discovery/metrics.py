"""``/metrics`` in Prometheus' text format, read from the ``NodeState`` at scrape time.

A custom collector instead of counters updated alongside the state: the numbers cannot drift
from what ``/status`` says, and a scrape costs no more than reading a few attributes.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector

from h2o_k8s_discovery.node_state import NodeState, Phase

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
    """The text exposition of ``state``'s metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeStateCollector(state))
    return generate_latest(registry)
