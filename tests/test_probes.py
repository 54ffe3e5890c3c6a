"""Readiness: the probe state machine, driven by real HTTP against a stand-in of /3/Cloud."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from h2o_k8s_discovery.cloud.client import CloudWatcher, cloud_url
from h2o_k8s_discovery.cloud.members import members_to_watch
from h2o_k8s_discovery.cloud.status import CloudStatus
from h2o_k8s_discovery.cloud.watch import _leader_peer
from h2o_k8s_discovery.errors import ProbeServerError
from h2o_k8s_discovery.peers import Peer
from h2o_k8s_discovery.server.node_state import NodeState, Phase
from h2o_k8s_discovery.server.probes import ProbeServer
from k8s_sim.net import free_port

PEERS = tuple(Peer.parse(f"10.0.0.{i}", 54321) for i in (1, 2, 3))


def cloud(
    size: int = 3,
    *,
    consensus: bool = True,
    healthy: bool = True,
    node_idx: int = 0,
    leader_idx: int = 0,
) -> dict[str, Any]:
    """A /3/Cloud body shaped like H2O's."""
    return {
        "cloud_size": size,
        "consensus": consensus,
        "locked": False,
        "cloud_healthy": healthy,
        "node_idx": node_idx,
        "leader_idx": leader_idx,
        "bad_nodes": 0,
        "nodes": [{"ip_port": f"10.0.0.{i + 1}:54321", "healthy": True} for i in range(size)],
    }


def forming_state(ready_until_formed: bool = True) -> NodeState:
    return NodeState(
        ready_until_formed=ready_until_formed,
        phase=Phase.FORMING,
        peers=PEERS,
        self_peer=PEERS[0],
    )


# Each row: the /3/Cloud answers seen in order (None: no answer), the readiness after each.
SEQUENCES: list[tuple[str, list[dict[str, Any] | None], list[int]]] = [
    ("jvm not answering yet", [None, None], [200, 200]),
    ("leader once formed", [None, cloud(1), cloud(3)], [200, 200, 200]),
    ("follower once formed", [cloud(1, node_idx=0), cloud(3, node_idx=2)], [200, 404]),
    ("no consensus yet", [cloud(3, consensus=False, node_idx=1)], [200]),
    ("unhealthy cloud is not formed", [cloud(3, healthy=False, node_idx=1)], [200]),
    ("smaller cloud is not formed", [cloud(2, node_idx=1)], [200]),
    ("larger cloud is not formed", [cloud(4, node_idx=1)], [200]),
    ("non-member is not leader", [cloud(3, node_idx=-1)], [404]),
    (
        "role latched: no flap while views change",
        [cloud(3, node_idx=1), cloud(3, node_idx=1, leader_idx=1)],
        [404, 404],
    ),
    ("member lost after formation", [cloud(3), cloud(2)], [200, 503]),
    ("unhealthy after formation", [cloud(3, node_idx=1), cloud(3, healthy=False)], [404, 503]),
    ("damage is latched", [cloud(3), cloud(2), cloud(3)], [200, 503, 503]),
    (
        "silent leader is unready, then leader",
        [cloud(3), None, cloud(3, node_idx=2)],
        [200, 503, 200],
    ),
]


@pytest.mark.parametrize(
    ("answers", "expected"), [row[1:] for row in SEQUENCES], ids=[row[0] for row in SEQUENCES]
)
def test_readiness_sequence(answers: list[dict[str, Any] | None], expected: list[int]) -> None:
    """Readiness follows H2O's codes, decided once the full, healthy cloud has formed."""
    state = forming_state()
    seen = []
    for answer in answers:
        state.observe_cloud(None if answer is None else CloudStatus.parse(answer))
        seen.append(state.readiness())
    assert seen == expected


def test_silent_node_is_lost_only_after_the_loss_timeout() -> None:
    """A silent local node is 503 with a reason in /status; lost (latched) after the timeout."""
    now = [100.0]
    state = forming_state()
    state.loss_timeout = 60.0
    state.clock = lambda: now[0]
    state.observe_cloud(CloudStatus.parse(cloud(3)))
    now[0] += 30.0
    state.observe_cloud(None)
    assert state.readiness() == 503
    assert state.describe()["damage"] is None
    assert state.describe()["silence"] == (
        "the local H2O node has not answered for 30.0s (lost after H2O_CLOUD_LOSS_TIMEOUT=60s)"
    )
    state.observe_cloud(CloudStatus.parse(cloud(3)))
    assert (state.readiness(), state.describe()["silence"]) == (200, None)
    now[0] += 60.5
    state.observe_cloud(None)
    assert state.describe()["damage"] == (
        "the local H2O node has not answered for 60.5s, more than H2O_CLOUD_LOSS_TIMEOUT=60s"
    )
    state.observe_cloud(CloudStatus.parse(cloud(3)))
    assert state.readiness() == 503


def test_silence_is_logged_when_it_starts_and_ends(caplog: pytest.LogCaptureFixture) -> None:
    """A silence over many polls gives one warning when it starts and one line when it ends."""
    caplog.set_level(logging.INFO, logger="h2o_k8s_discovery.cloud.view")
    now = [0.0]
    state = forming_state()
    state.clock = lambda: now[0]
    state.observe_cloud(CloudStatus.parse(cloud(3)))
    for _ in range(5):
        now[0] += 0.5
        state.observe_cloud(None)
    state.observe_cloud(CloudStatus.parse(cloud(3)))
    messages = [record.getMessage() for record in caplog.records]
    assert messages[-2:] == [
        "not ready while the local H2O node has not answered for 0.5s "
        "(lost after H2O_CLOUD_LOSS_TIMEOUT=60s)",
        "the cloud answers again",
    ]


def test_lost_member_stays_lost_when_it_answers_again() -> None:
    """A member lost on evidence keeps the cloud damaged though it and H2O look whole again."""
    damages: list[str] = []
    state = forming_state()
    state.on_damage = damages.append
    state.observe_cloud(CloudStatus.parse(cloud(3)))
    state.observe_members({PEERS[2]: "refused a connection"}, {})
    state.observe_members({}, {})
    state.observe_cloud(CloudStatus.parse(cloud(3)))
    assert state.readiness() == 503
    assert state.describe()["damage"] == "member(s) lost: 10.0.0.3:54321 refused a connection"
    assert damages == [state.describe()["damage"]]


def test_silent_member_is_unready_without_damage() -> None:
    """A member whose port is silent makes readiness 503 and is named, but is not lost."""
    state = forming_state()
    state.on_damage = lambda damage: pytest.fail(f"damaged: {damage}")
    state.observe_cloud(CloudStatus.parse(cloud(3)))
    state.observe_members({}, {PEERS[1]: 2.0})
    assert state.readiness() == 503
    assert (
        "member 10.0.0.2:54321 has accepted no connection for 2.0s" in state.describe()["silence"]
    )
    state.observe_members({}, {})
    assert state.readiness() == 200


@pytest.mark.parametrize("is_loss", [True, False])
def test_local_refusal_is_a_loss_only_where_asked(is_loss: bool) -> None:
    """A refused local node is a latched loss for the sidecar; for ``run`` only silence."""
    state = forming_state()
    state.local_refusal_is_loss = is_loss
    state.observe_cloud(CloudStatus.parse(cloud(3)))
    state.observe_local_refusal()
    state.observe_cloud(None)
    state.observe_cloud(CloudStatus.parse(cloud(3)))
    refused = "the local H2O node refused a connection: nothing listens on its H2O port"
    assert state.describe()["damage"] == (refused if is_loss else None)
    assert state.readiness() == (503 if is_loss else 200)


async def test_watcher_tells_a_refused_node_from_a_silent_one() -> None:
    """A closed port (a real ECONNREFUSED) is reported as refused, besides "no answer"."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    seen: list[object] = []
    refused = asyncio.Event()
    watcher = CloudWatcher(
        cloud_url("127.0.0.1", closed),
        seen.append,
        is_formed=lambda: True,
        on_refused=refused.set,
    )
    watching = asyncio.create_task(watcher.run())
    try:
        async with asyncio.timeout(5):
            await refused.wait()
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
    assert seen[:1] == [None]


def test_damage_names_the_missing_node() -> None:
    """/status says which member is gone."""
    state = forming_state()
    state.observe_cloud(CloudStatus.parse(cloud(3)))
    state.observe_cloud(CloudStatus.parse(cloud(2)))
    assert state.describe()["damage"] == "cloud of 2 of 3; missing: 10.0.0.3:54321"


PEERS6 = tuple(Peer.parse(f"2001:2:0:1::1{i}", 54321) for i in (1, 2, 3))


def cloud6(members: list[str], *, node_idx: int = 0) -> dict[str, Any]:
    """A /3/Cloud body of an IPv6 cloud, members named as given."""
    nodes = [{"ip_port": member, "healthy": True} for member in members]
    return {**cloud(len(members), node_idx=node_idx), "nodes": nodes}


def ipv6_state() -> NodeState:
    return NodeState(phase=Phase.FORMING, peers=PEERS6, self_peer=PEERS6[0])


def test_ipv6_cloud_in_h2o_form_is_whole(caplog: pytest.LogCaptureFixture) -> None:
    """H2O's uncompressed IPv6 members are our bracketed peers: formed, undamaged, leader named."""
    state = ipv6_state()
    caplog.set_level("INFO")
    members = [f"2001:2:0:1:0:0:0:1{i}:54321" for i in (1, 2, 3)]
    for _ in range(3):
        state.observe_cloud(CloudStatus.parse(cloud6(members)))
    assert state.readiness() == 200
    status = state.describe()
    assert status["damage"] is None
    assert status["leader"] == "[2001:2:0:1::11]:54321"
    assert "leader node IP is '/2001:2:0:1::11'" in caplog.text


def test_ipv6_damage_names_the_missing_member() -> None:
    """A lost IPv6 member is named as the flatfile names it."""
    state = ipv6_state()
    members = [f"2001:2:0:1:0:0:0:1{i}:54321" for i in (1, 2, 3)]
    state.observe_cloud(CloudStatus.parse(cloud6(members)))
    state.observe_cloud(CloudStatus.parse(cloud6(members[:2])))
    assert state.describe()["damage"] == "cloud of 2 of 3; missing: [2001:2:0:1::13]:54321"


@pytest.mark.parametrize("leader", ["2001:2:0:1:0:0:0:11:54321", "[2001:2:0:1::11]:54321"])
def test_follower_watches_an_ipv6_leader(leader: str) -> None:
    """A follower finds the IPv6 leader among its peers, in H2O's form or ours, and watches it."""
    assert members_to_watch(PEERS6, PEERS6[1], _leader_peer(leader)) == [PEERS6[0]]
    assert members_to_watch(PEERS6, PEERS6[0], _leader_peer(leader)) == list(PEERS6[1:])


def test_unreadable_member_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """An ip_port that cannot be read is a warning naming it, and that member counts as unknown."""
    state = ipv6_state()
    members = [f"2001:2:0:1:0:0:0:1{i}:54321" for i in (1, 2, 3)]
    state.observe_cloud(CloudStatus.parse(cloud6(members)))
    odd = [*members[:2], "2001:2:0:1::13:54321"]
    state.observe_cloud(CloudStatus.parse(cloud6(odd)))
    assert state.readiness() == 503
    assert state.describe()["damage"] == "cloud of 3 of 3; missing: [2001:2:0:1::13]:54321"
    assert "'2001:2:0:1::13:54321' is not a member address" in caplog.text
    assert "Traceback" not in caplog.text


def test_not_ready_until_formed_when_asked() -> None:
    """With ready-until-formed off, forming pods answer 503, then the usual codes."""
    state = forming_state(ready_until_formed=False)
    assert state.readiness() == 503
    state.observe_cloud(CloudStatus.parse(cloud(3, node_idx=1)))
    assert state.readiness() == 404


def test_stopping_is_never_ready() -> None:
    """A stopping leader answers 503 so the Service stops routing to it."""
    state = forming_state()
    state.observe_cloud(CloudStatus.parse(cloud(3)))
    state.phase = Phase.STOPPING
    assert state.readiness() == 503


@pytest.mark.parametrize(
    "body",
    [{}, {"cloud_size": "3"}, {**cloud(3), "consensus": "yes"}, {**cloud(3), "nodes": [{}]}],
)
def test_odd_cloud_answers_are_rejected(body: dict[str, Any]) -> None:
    """A /3/Cloud answer missing a field or with a wrong type is a ValueError, not a guess."""
    with pytest.raises(ValueError, match="/3/Cloud"):
        CloudStatus.parse(body)


@contextlib.asynccontextmanager
async def stand_in_cloud(answer: Callable[[], dict[str, Any] | None]) -> AsyncIterator[int]:
    """An HTTP server on loopback whose /3/Cloud returns ``answer()`` (503 for None)."""

    async def handle(_request: web.Request) -> web.Response:
        body = answer()
        if body is None:
            return web.Response(status=503)
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/3/Cloud", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def wait_for_status(
    session: aiohttp.ClientSession, url: str, expected: int, deadline: float
) -> float:
    """Poll ``url`` until it answers ``expected``; returns when, fails at the deadline."""
    while time.monotonic() < deadline:
        async with session.get(url) as response:
            if response.status == expected:
                return time.monotonic()
        await asyncio.sleep(0.01)
    pytest.fail(f"{url} never answered {expected}")


async def test_probe_follows_the_cloud_over_http() -> None:
    """The probe turns from 200 to 404 within 250 ms of the stand-in reporting the cloud."""
    answers: list[dict[str, Any] | None] = [cloud(1)]
    state = forming_state()
    api_port = free_port()
    async with stand_in_cloud(lambda: answers[-1]) as h2o_port:
        server = ProbeServer(state, api_port, host="127.0.0.1")
        await server.start()
        watcher = CloudWatcher(
            cloud_url("127.0.0.1", h2o_port),
            state.observe_cloud,
            is_formed=lambda: state.phase is Phase.FORMED,
        )
        watching = asyncio.create_task(watcher.run())
        probe = f"http://127.0.0.1:{api_port}/kubernetes/isLeaderNode"
        try:
            async with aiohttp.ClientSession() as session:
                await wait_for_status(session, probe, 200, time.monotonic() + 5)
                formed_at = time.monotonic()
                answers.append(cloud(3, node_idx=2))
                seen_at = await wait_for_status(session, probe, 404, time.monotonic() + 5)
                assert seen_at - formed_at < 0.25
                async with session.get(f"http://127.0.0.1:{api_port}/status") as response:
                    status = await response.json()
                assert status["phase"] == "formed"
                assert status["cloud_size"] == 3
                assert status["leader"] == "10.0.0.1:54321"
                assert status["is_leader"] is False
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            await server.stop()


async def test_routes_and_methods() -> None:
    """GET only on the three paths: other methods 405, other paths 404, as H2O does."""
    state = forming_state()
    port = free_port()
    server = ProbeServer(state, port, host="127.0.0.1")
    await server.start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/healthz") as response:
                assert response.status == 200
            async with session.post(base + "/kubernetes/isLeaderNode") as response:
                assert response.status == 405
            async with session.head(base + "/kubernetes/isLeaderNode") as response:
                assert response.status == 405
            async with session.get(base + "/3/Cloud") as response:
                assert response.status == 404
    finally:
        await server.stop()


async def test_port_in_use_is_a_clear_error() -> None:
    """A taken probe port gives a ProbeServerError naming the port and the variable."""
    with socket.socket() as holder:
        holder.bind(("", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = ProbeServer(forming_state(), port)
        with pytest.raises(ProbeServerError, match=f"{port}.*H2O_KUBERNETES_API_PORT"):
            await server.start()
