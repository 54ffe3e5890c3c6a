"""Is every member of a formed cloud still there? A TCP connect to each one's H2O port.

H2O itself takes tens of seconds to mark a dead node unhealthy in ``/3/Cloud``. A refused or
timed-out connection to a member's port says it within a second, so readiness can leave a
damaged cloud at once. To keep the cost linear in the cloud's size, the leader watches every
member and the others watch only the leader: a lost follower stops the leader's readiness, a
lost leader stops everyone's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from h2o_k8s_discovery.peers import Peer

#: Consecutive failed connects before a member counts as lost (one may be a passing blip).
FAILURES_TO_LOSE = 2


def members_to_watch(members: Sequence[Peer], me: Peer, leader: Peer | None) -> list[Peer]:
    """Every other member for the leader; only the leader for the others."""
    if leader is None or leader == me:
        return [peer for peer in members if peer != me]
    return [leader]


async def reachable(peer: Peer, limit: float) -> bool:
    """A TCP connection to the member's H2O port opens within ``limit`` seconds."""
    try:
        async with asyncio.timeout(limit):
            _, writer = await asyncio.open_connection(str(peer.ip), peer.port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class MemberWatcher:
    """Checks ``members`` every ``interval`` seconds; reports the set of lost ones."""

    def __init__(
        self,
        members: Sequence[Peer],
        on_lost: Callable[[frozenset[Peer]], None],
        *,
        interval: float = 0.5,
        timeout: float = 1.0,
    ) -> None:
        self.members = list(members)
        self.on_lost = on_lost
        self.interval = interval
        self.timeout = timeout
        self.failures = dict.fromkeys(self.members, 0)

    async def run(self) -> None:
        """Check until cancelled."""
        while True:
            results = await asyncio.gather(*(reachable(m, self.timeout) for m in self.members))
            for member, ok in zip(self.members, results, strict=True):
                self.failures[member] = 0 if ok else self.failures[member] + 1
            lost = frozenset(m for m, n in self.failures.items() if n >= FAILURES_TO_LOSE)
            self.on_lost(lost)
            await asyncio.sleep(self.interval)
