"""Peers agree before launch: real /peers servers on loopback addresses, one per peer."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator

import aiohttp
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from h2o_k8s_discovery.cloud.status import CloudStatus
from h2o_k8s_discovery.discovery.agreement import ask_peers, next_set, reach_agreement
from h2o_k8s_discovery.peers import Peer, Snapshot, snapshot
from h2o_k8s_discovery.server.node_state import NodeState, Phase
from h2o_k8s_discovery.server.probes import ProbeServer
from k8s_sim.net import free_port

PEERS = snapshot([Peer.parse(f"127.0.0.{i}", 54321) for i in (1, 2, 3)])
ME = PEERS[0]


@contextlib.asynccontextmanager
async def peer_servers(states: dict[str, NodeState], port: int) -> AsyncIterator[None]:
    """The real probe server of each given peer, bound to that peer's loopback address."""
    servers = [ProbeServer(state, port, host=ip) for ip, state in states.items()]
    for server in servers:
        await server.start()
    try:
        yield
    finally:
        for server in servers:
            await server.stop()


def state_with(peers: Snapshot, phase: Phase = Phase.LOOKING_UP) -> NodeState:
    return NodeState(phase=phase, peers=peers)


async def test_all_agree() -> None:
    """Every peer reporting the same set is an agreement."""
    port = free_port()
    states = {"127.0.0.2": state_with(PEERS), "127.0.0.3": state_with(PEERS, Phase.FORMING)}
    async with peer_servers(states, port), aiohttp.ClientSession() as session:
        outcome = await ask_peers(session, PEERS, port, ME)
    assert outcome.complete
    assert outcome.agreeing == PEERS


async def test_a_peer_with_another_view_and_a_silent_one() -> None:
    """A peer seeing fewer pods differs, a peer not serving is silent: no agreement, both named."""
    port = free_port()
    states = {"127.0.0.2": state_with(PEERS[:2])}
    async with peer_servers(states, port), aiohttp.ClientSession() as session:
        outcome = await ask_peers(session, PEERS, port, ME)
    assert not outcome.complete
    assert outcome.differing == {PEERS[1]: ("127.0.0.1:54321", "127.0.0.2:54321")}
    assert outcome.silent == (PEERS[2],)
    assert "127.0.0.2:54321 sees 127.0.0.1:54321 127.0.0.2:54321" in outcome.describe()


async def test_agreement_reached_once_views_converge() -> None:
    """A lagging peer catches up after a few rounds and the agreement completes."""
    port = free_port()
    lagging = state_with(PEERS[:2])
    states = {"127.0.0.2": lagging, "127.0.0.3": state_with(PEERS)}
    rounds = [0]

    async def refresh() -> Snapshot:
        rounds[0] += 1
        if rounds[0] == 3:
            lagging.peers = PEERS  # its DNS view caught up
        return PEERS

    async with peer_servers(states, port):
        agreed, outcome = await reach_agreement(
            refresh, port, ME, interval=0.05, remaining=lambda: math.inf
        )
    assert outcome.complete
    assert agreed == PEERS
    assert rounds[0] == 3


async def test_a_peer_up_a_moment_later_is_asked_again_soon() -> None:
    """Peers that start their servers a moment later are retried within the first retries, not
    after a whole poll interval."""
    port = free_port()
    late = state_with(PEERS[:2])
    rounds: list[float] = []

    async def refresh() -> Snapshot:
        rounds.append(asyncio.get_running_loop().time())
        if len(rounds) == 3:
            late.peers = PEERS  # the late peer has finished its own lookup
        return PEERS

    states = {"127.0.0.2": late, "127.0.0.3": state_with(PEERS)}
    async with peer_servers(states, port), asyncio.timeout(5):
        _, outcome = await reach_agreement(
            refresh, port, ME, interval=30.0, remaining=lambda: math.inf
        )
    assert outcome.complete
    assert len(rounds) == 3
    # First retries come after 0.1 s, then 0.2 s, nowhere near the 30 s interval.
    assert rounds[2] - rounds[0] < 2.0


async def test_agreement_gives_up_at_the_deadline() -> None:
    """Without agreement the rounds stop when no time remains, with the last outcome."""
    port = free_port()
    left = [3]

    async def refresh() -> Snapshot:
        left[0] -= 1
        return PEERS

    async with peer_servers({"127.0.0.2": state_with(PEERS[:2])}, port):
        _, outcome = await reach_agreement(
            refresh, port, ME, interval=0.01, remaining=lambda: float(left[0])
        )
    assert not outcome.complete
    assert left[0] == 0


async def test_metrics_are_openmetrics_text() -> None:
    """/metrics parses as OpenMetrics and reports phase, peers, leader and DNS errors."""
    port = free_port()
    state = NodeState(phase=Phase.FORMING, peers=PEERS[:1], self_peer=ME)
    state.dns_polls, state.dns_errors, state.lookup_seconds = 4, {"servfail": 2}, 1.5
    state.observe_cloud(
        CloudStatus.parse(
            {
                "cloud_size": 1,
                "consensus": True,
                "locked": False,
                "cloud_healthy": True,
                "node_idx": 0,
                "leader_idx": 0,
                "nodes": [{"ip_port": "127.0.0.1:54321", "healthy": True}],
            }
        )
    )
    server = ProbeServer(state, port, host="127.0.0.1")
    await server.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            assert response.status == 200
            text = await response.text()
    finally:
        await server.stop()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)  # type: ignore[no-untyped-call]
        for sample in family.samples
    }
    prefix = "h2o_k8s_discovery"
    assert samples[(f"{prefix}_phase", (((f"{prefix}_phase"), "formed"),))] == 1
    assert samples[(f"{prefix}_leader", ())] == 1
    assert samples[(f"{prefix}_peers", ())] == 1
    assert samples[(f"{prefix}_cloud_size", ())] == 1
    assert samples[(f"{prefix}_dns_polls_total", ())] == 4
    assert samples[(f"{prefix}_dns_errors_total", (("kind", "servfail"),))] == 2
    assert samples[(f"{prefix}_lookup_duration_seconds", ())] == 1.5


def test_next_set_never_shrinks_without_an_expected_count() -> None:
    """Without a count only a superset replaces the set; empty or partial answers keep it."""
    grown = snapshot([*PEERS, Peer.parse("127.0.0.4", 54321)])
    assert next_set(PEERS, (), None) == PEERS
    assert next_set(PEERS, PEERS[:1], None) == PEERS
    assert next_set(PEERS, snapshot([*PEERS[:2], grown[-1]]), None) == PEERS
    assert next_set(PEERS, grown, None) == grown


def test_next_set_with_an_expected_count_takes_exactly_that_count() -> None:
    """With a count a fresh answer of that size replaces the set, any other size keeps it."""
    other = snapshot([*PEERS[:2], Peer.parse("127.0.0.4", 54321)])
    assert next_set(PEERS, other, 3) == other
    assert next_set(PEERS, PEERS[:2], 3) == PEERS
    assert next_set(PEERS, (), 3) == PEERS
