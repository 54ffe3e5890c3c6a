"""Is every member of a formed cloud still there? A TCP connect to each one's H2O port.

Loss is decided on evidence only. A refused connection is evidence: nothing listens on the
member's port, so its JVM is gone, and it stays lost even if a new JVM answers there later (a
new JVM at the same address has none of the data the cloud held; PIDs repeat in containers, so
nothing else tells the two apart). A connect that times out is not: a JVM in a stop-the-world
pause still gets its handshakes completed by the kernel, and a busy network drops packets. Such
a member only counts as lost after ``loss_timeout`` seconds without an accepted connection.

To keep the cost linear in the cloud's size, the leader watches every member and the others
watch only the leader: a lost follower stops the leader's readiness, a lost leader stops
everyone's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from h2o_k8s_discovery.peers import Peer

#: Why a member that refused a connection counts as lost.
REFUSED_REASON = "refused a connection: nothing listens on its H2O port"


class Contact(Enum):
    """What one connect to a member's H2O port said."""

    ACCEPTED = "accepted"
    #: ECONNREFUSED: the member's host is there and nothing listens on the port.
    REFUSED = "refused"
    #: No answer in time, or no route: no evidence either way.
    SILENT = "silent"


def members_to_watch(members: Sequence[Peer], me: Peer, leader: Peer | None) -> list[Peer]:
    """Every other member for the leader; only the leader for the others."""
    if leader is None or leader == me:
        return [peer for peer in members if peer != me]
    return [leader]


async def contact(peer: Peer, limit: float) -> Contact:
    """Open (and close) a TCP connection to the member's H2O port within ``limit`` seconds."""
    try:
        async with asyncio.timeout(limit):
            _, writer = await asyncio.open_connection(str(peer.ip), peer.port)
    except ConnectionRefusedError:
        return Contact.REFUSED
    except (OSError, TimeoutError):
        return Contact.SILENT
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Contact.ACCEPTED


@dataclass
class MemberLedger:
    """The rules, without I/O: which members are lost (latched) and which are silent, since when.

    Every member counts as heard at ``started``: the cloud had just formed with all of them.
    """

    members: Sequence[Peer]
    loss_timeout: float
    started: float
    #: Member -> why it is lost. Never shrinks: H2O cannot take a lost member back.
    lost: dict[Peer, str] = field(default_factory=dict)
    last_accepted: dict[Peer, float] = field(default_factory=dict)
    #: Members whose last connect was silent.
    quiet: set[Peer] = field(default_factory=set)

    def record(self, peer: Peer, result: Contact, now: float) -> None:
        """Take one connect's result at time ``now`` into account."""
        if peer in self.lost:
            return
        if result is Contact.ACCEPTED:
            self.last_accepted[peer] = now
            self.quiet.discard(peer)
        elif result is Contact.REFUSED:
            self.lost[peer] = REFUSED_REASON
            self.quiet.discard(peer)
        else:
            self.quiet.add(peer)
            silent = now - self.last_accepted.get(peer, self.started)
            if silent > self.loss_timeout:
                self.lost[peer] = (
                    f"accepted no connection for {silent:.1f}s, more than "
                    f"H2O_CLOUD_LOSS_TIMEOUT={self.loss_timeout:g}s"
                )
                self.quiet.discard(peer)

    def silent(self, now: float) -> dict[Peer, float]:
        """Members not lost whose last connect was silent -> seconds since one was accepted."""
        return {
            peer: now - self.last_accepted.get(peer, self.started)
            for peer in self.members
            if peer in self.quiet
        }


class MemberWatcher:
    """Checks ``members`` every ``interval`` seconds; reports the lost and the silent ones."""

    def __init__(
        self,
        members: Sequence[Peer],
        on_report: Callable[[Mapping[Peer, str], Mapping[Peer, float]], None],
        *,
        loss_timeout: float,
        interval: float = 0.5,
        timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.members = list(members)
        self.on_report = on_report
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self.ledger = MemberLedger(self.members, loss_timeout, started=clock())

    async def run(self) -> None:
        """Check until cancelled."""
        while True:
            watched = [m for m in self.members if m not in self.ledger.lost]
            results = await asyncio.gather(*(contact(m, self.timeout) for m in watched))
            now = self.clock()
            for member, result in zip(watched, results, strict=True):
                self.ledger.record(member, result, now)
            self.on_report(dict(self.ledger.lost), self.ledger.silent(now))
            await asyncio.sleep(self.interval)
