"""Peers agree before launch: no pod starts H2O with a peer set the others do not share.

DNS views differ between pods for a while (records appear at different times on different
resolvers, caches lag). H2O started from different flatfiles can form several clouds, each with
its own Ready leader. So before writing its flatfile each entrypoint asks every peer in its
snapshot for theirs (``GET /peers`` on the probe port) and goes on only when all of them report
the same set. A peer that already launched reports the set it launched with, so a pod can never
join a cloud built from another view.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from h2o_k8s_discovery.peers import Peer, Snapshot

log = logging.getLogger(__name__)

PEERS_PATH = "/peers"
#: Seconds before the first retry. Pods started together come up within a fraction of a second
#: of each other, so a quick retry usually completes the agreement; later retries double up to
#: the DNS poll interval, which bounds the load a long wait puts on the peers and the DNS.
FIRST_RETRY = 0.1


@dataclass(frozen=True, slots=True)
class Agreement:
    """The outcome of one round: who agrees, who reports another set, who does not answer."""

    agreeing: tuple[Peer, ...]
    differing: dict[Peer, tuple[str, ...]]
    silent: tuple[Peer, ...]

    @property
    def complete(self) -> bool:
        return not self.differing and not self.silent

    def describe(self) -> str:
        parts = [f"{len(self.agreeing)} agree"]
        if self.differing:
            views = "; ".join(
                f"{p} sees {' '.join(v) or 'nothing'}" for p, v in self.differing.items()
            )
            parts.append(f"{len(self.differing)} see another set ({views})")
        if self.silent:
            parts.append(f"{len(self.silent)} do not answer ({' '.join(map(str, self.silent))})")
        return ", ".join(parts)


def next_set(current: Snapshot, fresh: Snapshot, expected_count: int | None) -> Snapshot:
    """The set to agree on after a fresh DNS answer ``fresh`` (this pod included).

    The agreement never shrinks on an empty or failed answer: those mean "DNS does not know
    right now" (a replica not yet synced, a restart), not "every other pod went away", and
    shrinking to this pod alone would start a cloud of one that answers 200. With an expected
    count, a fresh answer replaces the set only when it holds exactly that count, as the
    lookup itself decides. Without one there is no count to tell a whole view from a partial
    one, so a fresh answer is taken only when it holds every peer of the current set (a pod
    appeared); one that lacks a peer is kept out. If that peer really went away it never
    answers, the agreement runs out of time and fails closed (exit 69), and the restarted pod
    looks up afresh: a smaller cloud is never started from a partial view.
    """
    if not fresh:
        return current
    if expected_count is not None:
        return fresh if len(fresh) == expected_count else current
    return fresh if set(current) <= set(fresh) else current


async def ask_peers(
    session: aiohttp.ClientSession, peers: Snapshot, api_port: int, me: Peer
) -> Agreement:
    """One round: every other peer's ``/peers``, compared with ``peers``."""
    ours = tuple(str(peer) for peer in peers)
    others = [peer for peer in peers if peer != me]
    views = await asyncio.gather(*(_view_of(session, peer, api_port) for peer in others))
    agreeing = [me] if me in peers else []
    differing: dict[Peer, tuple[str, ...]] = {}
    silent = []
    for peer, view in zip(others, views, strict=True):
        if view is None:
            silent.append(peer)
        elif view == ours:
            agreeing.append(peer)
        else:
            differing[peer] = view
    return Agreement(tuple(agreeing), differing, tuple(silent))


async def _view_of(
    session: aiohttp.ClientSession, peer: Peer, api_port: int
) -> tuple[str, ...] | None:
    host = f"[{peer.ip}]" if peer.ip.version == 6 else str(peer.ip)
    try:
        async with session.get(f"http://{host}:{api_port}{PEERS_PATH}") as response:
            if response.status != 200:
                return None
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    listed = body.get("peers") if isinstance(body, dict) else None
    if not isinstance(listed, list):
        return None
    return tuple(sorted(map(str, listed), key=_sort_key))


def _sort_key(text: str) -> tuple[int, int, int] | tuple[int, str]:
    # Sort as Peer does, so two equal sets compare equal; unparsable entries sort last.
    host, _, port = text.rpartition(":")
    try:
        return Peer.parse(host.strip("[]"), int(port)).sort_key()
    except ValueError:
        return (99, text)


async def reach_agreement(
    refresh: Callable[[], Awaitable[Snapshot]],
    api_port: int,
    me: Peer,
    *,
    interval: float,
    remaining: Callable[[], float],
) -> tuple[Snapshot, Agreement]:
    """Ask until every peer reports our set, refreshing our own view between rounds.

    ``refresh`` returns this pod's current peer set (a new DNS poll). Ends at agreement, or when
    ``remaining()`` reaches 0 with the last round's outcome (the caller decides what then).
    """
    logged = ""
    timeout = aiohttp.ClientTimeout(total=max(0.2, min(1.0, interval)))
    delay = min(FIRST_RETRY, interval)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            peers = await refresh()
            outcome = await ask_peers(session, peers, api_port, me)
            if outcome.complete or remaining() <= 0:
                return peers, outcome
            if outcome.describe() != logged:
                logged = outcome.describe()
                log.info("waiting for the peers to agree on %d peer(s): %s", len(peers), logged)
            await asyncio.sleep(min(delay, remaining()))
            delay = min(delay * 2, interval)
