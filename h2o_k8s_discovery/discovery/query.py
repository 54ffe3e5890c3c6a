"""One DNS poll: ask for the headless Service's records once and return a snapshot of peers.

A poll either returns a complete snapshot or raises ``DnsQueryError``; it never returns part of
an answer. NXDOMAIN and "no records of that type" are not errors: they are what a headless
Service with no ready pods looks like, so they give an empty snapshot. Only one address family
is asked for (``ip_family``): a dual-stack Service lists every pod once per family.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver
import dns.rrset

from h2o_k8s_discovery.config.settings import IpFamily, LookupSettings, RecordType
from h2o_k8s_discovery.discovery.ip_family import with_ip_family
from h2o_k8s_discovery.errors import DnsQueryError
from h2o_k8s_discovery.peers import IPAddress, Peer, Snapshot, snapshot

log = logging.getLogger(__name__)

#: EDNS payload size recommended since DNS Flag Day 2020: about 73 A records fit in one answer
#: before the server truncates and the resolver falls back to TCP.
EDNS_PAYLOAD = 1232

#: The address records of each family.
_ADDRESS_TYPES = {IpFamily.IPV4: dns.rdatatype.A, IpFamily.IPV6: dns.rdatatype.AAAA}

#: SRV targets missing from the additional section are resolved this many at a time.
_TARGET_CONCURRENCY = 32


def make_resolver(settings: LookupSettings) -> dns.asyncresolver.Resolver:
    """A resolver for the configured nameserver, or for /etc/resolv.conf's servers."""
    if settings.nameserver is None:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [str(settings.nameserver.ip)]
        resolver.port = settings.nameserver.port
    resolver.use_edns(0, 0, EDNS_PAYLOAD)
    # One try may use the whole query budget: dnspython's own 2 s per try would cut off a
    # server that answers in 3 s even when H2O_DNS_QUERY_TIMEOUT allows it.
    resolver.timeout = settings.query_timeout
    # The lookup asks again soon anyway; a cached answer would hide pods that came or went.
    resolver.cache = None
    return resolver


async def poll_once(
    resolver: dns.asyncresolver.Resolver, settings: LookupSettings, lifetime: float
) -> Snapshot:
    """One poll of ``settings.absolute_name``, finished or abandoned within ``lifetime`` s.

    ``settings.ip_family`` says which address records count; ``AUTO`` is settled here if the
    caller has not (``discover_peers`` does, once per lookup).
    """
    name = dns.name.from_text(settings.absolute_name)
    rdtype = _ADDRESS_TYPES[with_ip_family(settings).ip_family]
    try:
        async with asyncio.timeout(lifetime):
            if settings.record_type is RecordType.SRV:
                return await _poll_srv(resolver, name, rdtype, lifetime)
            return await _poll_addresses(resolver, name, rdtype, settings.h2o_port, lifetime)
    except TimeoutError:
        raise DnsQueryError("timeout", f"no answer for {name} within {lifetime:.1f}s") from None


async def _poll_addresses(
    resolver: dns.asyncresolver.Resolver,
    name: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    port: int,
    lifetime: float,
) -> Snapshot:
    ips = await _resolve(resolver, name, rdtype, lifetime)
    return snapshot([Peer(ip, port) for ip in _usable(name, ips)])


async def _poll_srv(
    resolver: dns.asyncresolver.Resolver,
    name: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    lifetime: float,
) -> Snapshot:
    answer = await _query(resolver, name, dns.rdatatype.SRV, lifetime)
    if answer is None or answer.rrset is None:
        return ()
    glue = _addresses_in(answer.response.additional, rdtype)
    targets = []
    for record in answer.rrset:
        if record.port == 0 or record.target == dns.name.root:
            log.debug("skipping SRV record %s: no service there", record)
            continue
        targets.append((record.target, record.port))
    semaphore = asyncio.Semaphore(_TARGET_CONCURRENCY)

    async def addresses_of(target: dns.name.Name) -> list[IPAddress]:
        if target in glue:
            return glue[target]
        async with semaphore:
            return await _resolve(resolver, target, rdtype, lifetime)

    resolved = await asyncio.gather(*(addresses_of(target) for target, _ in targets))
    peers = [
        Peer(ip, port)
        for (target, port), ips in zip(targets, resolved, strict=True)
        for ip in _usable(target, ips)
    ]
    return snapshot(peers)


def _addresses_in(
    section: Iterable[dns.rrset.RRset], rdtype: dns.rdatatype.RdataType
) -> dict[dns.name.Name, list[IPAddress]]:
    found: dict[dns.name.Name, list[IPAddress]] = {}
    for rrset in section:
        if rrset.rdtype == rdtype:
            found.setdefault(rrset.name, []).extend(_ip(record.address) for record in rrset)
    return found


async def _resolve(
    resolver: dns.asyncresolver.Resolver,
    name: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    lifetime: float,
) -> list[IPAddress]:
    answer = await _query(resolver, name, rdtype, lifetime)
    if answer is None or answer.rrset is None:
        return []
    return [_ip(record.address) for record in answer.rrset]


async def _query(
    resolver: dns.asyncresolver.Resolver,
    name: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    lifetime: float,
) -> dns.resolver.Answer | None:
    """The answer, ``None`` for NXDOMAIN; translates every retryable failure to DnsQueryError."""
    try:
        answer = await resolver.resolve(
            name, rdtype, lifetime=lifetime, search=False, raise_on_no_answer=False
        )
    except dns.resolver.NXDOMAIN:
        return None
    except dns.resolver.LifetimeTimeout:
        raise DnsQueryError("timeout", f"no answer for {name} within {lifetime:.1f}s") from None
    except dns.resolver.NoNameservers as err:
        raise _classify(name, err) from None
    except dns.exception.DNSException as err:
        raise DnsQueryError("malformed", f"{name}: {err}") from None
    if answer.response.flags & dns.flags.TC:
        # Even the TCP answer was cut (a 64 KiB message holds about 4000 A records): using it
        # would write a partial peer set.
        raise DnsQueryError("truncated", f"the answer for {name} is truncated even over TCP")
    return answer


def _classify(name: dns.name.Name, err: dns.resolver.NoNameservers) -> DnsQueryError:
    """Name the first server failure: a SERVFAIL, a refusal, an unreachable server, garbage."""
    failures = err.kwargs.get("errors") or []
    if not failures:
        return DnsQueryError("unreachable", f"{name}: no nameserver to ask")
    # The last failure is the one that ended the query: after a truncated UDP answer, the TCP
    # attempt's own failure.
    server, _tcp, port, cause, _response = failures[-1]
    where = f"server {server} port {port}"
    if isinstance(cause, str):
        return DnsQueryError(cause.lower(), f"{where} answered {cause} for {name}")
    if isinstance(cause, OSError):
        return DnsQueryError("unreachable", f"{where}: {cause.strerror or cause}")
    if isinstance(cause, EOFError):
        return DnsQueryError("unreachable", f"{where} closed the TCP connection for {name}")
    what = str(cause) or type(cause).__name__
    return DnsQueryError("malformed", f"{where} sent an unusable answer for {name}: {what}")


def _ip(text: str) -> IPAddress:
    return Peer.parse(text, 1).ip


def _usable(owner: dns.name.Name, ips: Iterable[IPAddress]) -> list[IPAddress]:
    """Drop addresses no H2O node can have; say so, since it means a broken DNS answer."""
    usable = []
    for ip in ips:
        if ip.is_unspecified or ip.is_multicast:
            _warn_unusable(owner, ip)
        else:
            usable.append(ip)
    return usable


@functools.lru_cache(maxsize=256)
def _warn_unusable(owner: dns.name.Name, ip: IPAddress) -> None:
    # Cached so a broken record is reported once, not on every poll.
    log.warning("ignoring address %s published for %s: no pod can have it", ip, owner)
