"""The demo's own DNS server: the headless Service's A, AAAA and SRV answers, nothing more."""

from __future__ import annotations

import dns.asyncquery
import dns.asyncresolver
import dns.flags
import dns.message
import dns.rcode
import pytest

from h2o_k8s_discovery.commands.demo_dns import DnsServer

SERVICE = "h2o.demo.svc.cluster.local."


async def ask(server: DnsServer, name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return await dns.asyncquery.udp(query, server.host, port=server.port, timeout=2)


async def test_srv_answers_carry_the_targets_addresses() -> None:
    """An SRV answer lists each pod's port and, in the additional section, its address."""
    async with DnsServer() as server:
        server.set_records(f"h2o-0.{SERVICE}", a=["127.0.0.1"])
        server.set_records(SERVICE, srv=[(0, 0, 54321, f"h2o-0.{SERVICE}")])
        response = await ask(server, SERVICE, "SRV")
    assert [item.port for rrset in response.answer for item in rrset] == [54321]
    assert [str(item) for rrset in response.additional for item in rrset] == ["127.0.0.1"]


async def test_unknown_names_and_types_are_answered_at_once() -> None:
    """NXDOMAIN for a name it does not know, an empty answer for a type it does not hold."""
    async with DnsServer() as server:
        server.set_records(SERVICE, a=["127.0.0.1"])
        unknown = await ask(server, f"other.{SERVICE}", "A")
        ptr = await ask(server, "1.0.0.127.in-addr.arpa.", "PTR")
        nodata = await ask(server, SERVICE, "AAAA")
        server.remove(SERVICE)
        removed = await ask(server, SERVICE, "A")
    assert unknown.rcode() == ptr.rcode() == removed.rcode() == dns.rcode.NXDOMAIN
    assert nodata.rcode() == dns.rcode.NOERROR
    assert nodata.answer == []


async def test_a_large_answer_is_truncated_over_udp_and_whole_over_tcp() -> None:
    """Too large for 512 bytes: TC and no records over UDP; the resolver gets all over TCP."""
    addresses = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(100)]
    async with DnsServer() as server:
        server.set_records(SERVICE, a=addresses)
        udp = await ask(server, SERVICE, "A")
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [server.host]
        resolver.port = server.port
        answer = await resolver.resolve(SERVICE, "A", lifetime=5)
    assert udp.flags & dns.flags.TC
    assert udp.answer == []
    assert sorted(str(item) for item in answer) == sorted(addresses)


def test_bad_records_are_refused_when_set() -> None:
    """An address of the wrong family, or no address at all, raises ValueError at once."""
    server = DnsServer()
    with pytest.raises(ValueError, match="fd00::1"):
        server.set_records(SERVICE, a=["fd00::1"])
    with pytest.raises(ValueError, match="not-an-ip"):
        server.set_records(SERVICE, aaaa=["not-an-ip"])
