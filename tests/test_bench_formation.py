"""The formation benchmark's own parts: the kubelet-like prober's rules, ready-gated records, the
seed environment, the finish line and the timeline read from logs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from bench._common import (
    API_PORT,
    SERVICE,
    CloudView,
    Impl,
    publish_ready,
    seed_manifest,
    seed_probe,
)
from bench._kubelet import EndpointChange, Endpoints, ProbeResult, Readiness, probe_succeeded
from bench._timeline import entrypoint_moments, h2o_moments, prober_moments
from bench.formation import Run, one_formed_leader, pair_ratios, settled_at
from h2o_k8s_discovery.commands.demo_dns import DnsServer
from h2o_k8s_discovery.config.settings import Settings
from k8s_sim.dns import ServerThread


@dataclass(frozen=True)
class Address:
    name: str
    ip: str


PODS = [Address(f"h2o-{i}", f"198.18.0.{11 + i}") for i in range(3)]


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with ServerThread(DnsServer("127.0.0.1")) as dns_server:
        yield dns_server


def ask(server: DnsServer, name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return dns.query.udp(query, "127.0.0.1", port=server.port, timeout=2.0)


def addresses(response: dns.message.Message) -> list[str]:
    return sorted(item.address for rrset in response.answer for item in rrset)


def test_seed_probe_is_the_manifests() -> None:
    """The prober uses the seed manifest's probe, Kubernetes' defaults filling what it omits."""
    probe = seed_probe()
    assert (probe.path, probe.port) == ("/kubernetes/isLeaderNode", API_PORT)
    assert (probe.initial_delay, probe.period, probe.failure_threshold) == (5.0, 5.0, 1)
    assert (probe.success_threshold, probe.timeout) == (1, 1.0)


def test_seed_env_sets_nothing_of_ours() -> None:
    """The seed env is H2O's four variables only: no POD_IP, no early start, no cloud name."""
    env = seed_manifest().pod_env("198.18.0.11")
    assert sorted(env) == [
        "H2O_KUBERNETES_API_PORT",
        "H2O_KUBERNETES_SERVICE_DNS",
        "H2O_NODE_EXPECTED_COUNT",
        "H2O_NODE_LOOKUP_TIMEOUT",
    ]
    settings = Settings.from_env(env)
    assert settings.lookup.service_dns.rstrip(".") == SERVICE


def test_readiness_follows_thresholds() -> None:
    """Ready after success_threshold successes in a row, not Ready after failure_threshold."""
    state = Readiness(success_threshold=2, failure_threshold=1)
    assert [state.observe(ok) for ok in (True, False, True, True, True)] == [
        False,
        False,
        False,
        True,
        False,
    ]
    assert state.ready
    assert state.observe(False)
    assert not state.ready


def test_probe_success_is_200_to_399() -> None:
    """Kubernetes counts 200-399 as success; a 404, a 503 or no answer fails the probe."""
    assert [probe_succeeded(s) for s in (200, 302, 399, 404, 503, None)] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def test_ready_gated_records(server: DnsServer) -> None:
    """Only Ready pods are in the Service (A, SRV and target A); none Ready gives NXDOMAIN."""
    endpoints = Endpoints(server, PODS, time.monotonic, publish_ready)
    publish_ready(server, [], PODS)
    assert ask(server, SERVICE, "A").rcode() == dns.rcode.NXDOMAIN
    endpoints.set_ready(0, True)
    endpoints.set_ready(2, True)
    assert addresses(ask(server, SERVICE, "A")) == ["198.18.0.11", "198.18.0.13"]
    srv = ask(server, SERVICE, "SRV")
    targets = sorted(str(item.target) for rrset in srv.answer for item in rrset)
    assert targets == [f"h2o-0.{SERVICE}.", f"h2o-2.{SERVICE}."]
    endpoints.set_ready(0, False)
    assert addresses(ask(server, SERVICE, "A")) == ["198.18.0.13"]
    assert ask(server, f"h2o-0.{SERVICE}", "A").rcode() == dns.rcode.NXDOMAIN
    endpoints.set_ready(2, False)
    assert ask(server, SERVICE, "A").rcode() == dns.rcode.NXDOMAIN
    assert [(c.pod, c.ready) for c in endpoints.snapshot()] == [
        (0, True),
        (2, True),
        (0, False),
        (2, False),
    ]


def test_finish_line_needs_the_leaders_full_cloud() -> None:
    """One 200 is not enough: that pod's /3/Cloud must show the formed cloud; others any non-200."""
    holds = one_formed_leader(3)
    formed, forming = CloudView(True, True), CloudView(False, True)
    assert holds((200, 404, None, formed, None, None))
    assert not holds((200, 404, 404, forming, formed, formed))
    assert not holds((200, 200, 404, formed, formed, formed))
    assert not holds((404, 200, 404, formed, None, None))


def test_settled_at_is_the_start_of_the_final_value() -> None:
    """A pod's readiness settles when its answer last changed before the end of observation."""
    line = [(1.0, None), (2.0, 200), (3.0, 404), (4.0, 404), (5.0, 404), (6.0, 200)]
    assert settled_at(line, end=5.5) == 3.0
    assert settled_at(line, end=6.0) == 6.0
    assert settled_at([], end=1.0) is None


def test_entrypoint_log_moments() -> None:
    """The JSON log's phase lines become moments relative to the run's start."""
    wall0 = 1_796_152_906.0  # 2026-12-01T19:21:46Z
    lines = [
        '{"time": "2026-12-01T19:21:46.187Z", "message": "serving probes on port 8081"}',
        "12-01 19:22:08.512 not json",
        '{"time": "2026-12-01T19:21:50.778Z", "message": "lookup over: x", "event": "lookup"}',
        '{"time": "2026-12-01T19:21:51.673Z", "message": "all", "event": "agreement"}',
        '{"time": "2026-12-01T19:21:51.682Z", "message": "f", "event": "flatfile"}',
        '{"time": "2026-12-01T19:21:51.686Z", "message": "started java as pid 11887"}',
    ]
    moments = entrypoint_moments(lines, wall0)
    assert moments == pytest.approx(
        {
            "probes up": 0.187,
            "lookup end": 4.778,
            "agreement end": 5.673,
            "hand-over": 5.682,
            "JVM spawned": 5.686,
        }
    )


def test_h2o_log_moments() -> None:
    """H2O's lines give main, the heartbeat's first cloud, the full cloud and the built-in
    lookup's steps, in local time."""
    wall0 = time.mktime((2026, 12, 1, 19, 22, 0, 0, 0, -1))
    prefix = "198.18.0.11:54321     11887        main  INFO water.default:"
    lines = [
        "19:22:01.000 [main] INFO  water.k8s.H2OCluster - Initializing H2O Kubernetes cluster",
        "19:22:03.500 [main] INFO  water.k8s.H2OCluster - Using the following pods to form H2O "
        "cluster: [198.18.0.12]",
        f"12-01 19:22:04.000 {prefix} ----- H2O started  -----",
        f"12-01 19:22:08.000 {prefix} Cloud of size 1 formed [h2o-0/198.18.0.11:54321]",
        f"12-01 19:22:10.000 {prefix} Cloud of size 3 formed [a, b, c]",
        f"12-01 19:22:12.000 {prefix} H2O started in 8000ms",
    ]
    assert h2o_moments(lines, wall0, 3) == pytest.approx(
        {
            "lookup start": 1.0,
            "lookup end": 3.5,
            "H2O main": 4.0,
            "heartbeat": 8.0,
            "cloud of N": 10.0,
            "REST up": 12.0,
        }
    )


def test_prober_moments() -> None:
    """The prober's record gives the first probe, the first publication, the last withdrawal."""
    results = [ProbeResult(5.0, None), ProbeResult(10.0, 200)]
    changes = [
        EndpointChange(10.0, 1, True),
        EndpointChange(10.1, 0, True),
        EndpointChange(20.0, 1, False),
    ]
    assert prober_moments(1, results, changes) == {
        "first probe": 5.0,
        "published": 10.0,
        "withdrawn": 20.0,
    }
    assert "withdrawn" not in prober_moments(0, results, changes)


def test_pair_ratios_pair_runs_in_order() -> None:
    """Each ours run is divided by the reference run of the same pair; unfinished pairs drop."""
    scenario = "seed env, ready-gated"
    runs = [
        Run(Impl.OURS, scenario, 10.0, 0, 0),
        Run(Impl.REFERENCE, scenario, 20.0, 0, 0),
        Run(Impl.REFERENCE, scenario, 30.0, 0, 0),
        Run(Impl.OURS, scenario, 15.0, 0, 0),
        Run(Impl.OURS, scenario, None, 0, 0),
        Run(Impl.REFERENCE, scenario, 40.0, 0, 0),
        Run(Impl.OURS, "another scenario", 1.0, 0, 0),
    ]
    assert pair_ratios(runs, scenario) == [0.5, 0.5]
