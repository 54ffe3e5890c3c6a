"""Loss on evidence: what a connect to a member's port says, and the rules that follow from it.

Real sockets on loopback: a closed port gives a real ECONNREFUSED; a listening socket nobody
accepts on gives a real "connect ok, HTTP silent", as a JVM in a stop-the-world pause does; a
listening socket whose accept queue is full drops the handshake, a real connect timeout.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator, Mapping

import aiohttp
import pytest

from h2o_k8s_discovery.cloud.client import cloud_url, fetch_cloud_status
from h2o_k8s_discovery.cloud.members import (
    REFUSED_REASON,
    Contact,
    MemberLedger,
    MemberWatcher,
    contact,
)
from h2o_k8s_discovery.peers import Peer

A, B = Peer.parse("10.0.0.1", 54321), Peer.parse("10.0.0.2", 54321)


@pytest.fixture
def closed_port() -> int:
    """A loopback port where nothing listens (bound once, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def never_accepting() -> Iterator[int]:
    """A listening loopback socket that never accepts: the kernel completes the handshakes."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A listening socket whose accept queue is full, so a new handshake is never completed."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        # Backlog 0 queues exactly one connection; this one fills the queue.
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            yield port


def loopback(port: int) -> Peer:
    return Peer.parse("127.0.0.1", port)


async def test_closed_port_is_refused(closed_port: int) -> None:
    """Nothing listening on the port is a refused connection: evidence of a lost member."""
    assert await contact(loopback(closed_port), 1.0) is Contact.REFUSED


async def test_paused_listener_accepts_but_http_stays_silent(never_accepting: int) -> None:
    """A listener that never serves (a paused JVM) accepts the connect; its HTTP is silent."""
    assert await contact(loopback(never_accepting), 1.0) is Contact.ACCEPTED
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as session:
        assert await fetch_cloud_status(session, cloud_url("127.0.0.1", never_accepting)) is None
    assert time.monotonic() - started >= 0.5


async def test_dropped_handshake_is_silent(full_backlog: int) -> None:
    """A connect that does not complete in time is silence, not evidence."""
    assert await contact(loopback(full_backlog), 0.3) is Contact.SILENT


def test_refused_member_is_lost_at_once_and_stays_lost() -> None:
    """One refused connect loses the member; a later accepted one does not bring it back."""
    ledger = MemberLedger([A, B], loss_timeout=60, started=0.0)
    ledger.record(A, Contact.REFUSED, 0.5)
    ledger.record(A, Contact.ACCEPTED, 1.0)
    ledger.record(B, Contact.ACCEPTED, 1.0)
    assert ledger.lost == {A: REFUSED_REASON}
    assert ledger.silent(1.0) == {}


def test_silent_member_is_lost_only_after_the_timeout() -> None:
    """Silence shorter than the timeout is reported as silence; longer, the member is lost."""
    ledger = MemberLedger([A, B], loss_timeout=60, started=0.0)
    ledger.record(A, Contact.ACCEPTED, 10.0)
    ledger.record(A, Contact.SILENT, 40.0)
    ledger.record(B, Contact.SILENT, 40.0)
    assert ledger.lost == {}
    assert ledger.silent(40.0) == {A: 30.0, B: 40.0}
    ledger.record(A, Contact.SILENT, 70.0)
    ledger.record(B, Contact.SILENT, 70.0)
    assert list(ledger.lost) == [B]
    assert "accepted no connection for 70.0s" in ledger.lost[B]
    assert ledger.silent(70.0) == {A: 60.0}


def test_accepted_connect_ends_the_silence() -> None:
    """A member that accepts again is neither silent nor lost."""
    ledger = MemberLedger([A], loss_timeout=5, started=0.0)
    ledger.record(A, Contact.SILENT, 4.0)
    ledger.record(A, Contact.ACCEPTED, 4.5)
    ledger.record(A, Contact.SILENT, 9.0)
    assert ledger.lost == {}
    assert ledger.silent(9.0) == {A: 4.5}


async def test_watcher_reports_refused_and_paused_members(
    closed_port: int, never_accepting: int
) -> None:
    """The watcher loses the closed port's member at once and keeps the paused one."""
    reports: list[tuple[Mapping[Peer, str], Mapping[Peer, float]]] = []
    three = asyncio.Event()

    def report(lost: Mapping[Peer, str], silent: Mapping[Peer, float]) -> None:
        reports.append((lost, silent))
        if len(reports) == 3:
            three.set()

    gone, paused = loopback(closed_port), loopback(never_accepting)
    watcher = MemberWatcher([gone, paused], report, loss_timeout=60, interval=0.05)
    task = asyncio.create_task(watcher.run())
    try:
        async with asyncio.timeout(5):
            await three.wait()
    finally:
        task.cancel()
    assert all(lost == {gone: REFUSED_REASON} for lost, _ in reports)
    assert all(silent == {} for _, silent in reports)
