"""The embedded DNS server and the dnsmasq helper, exercised by real clients over real sockets."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k8s_sim.dnsmasq import requires_dnsmasq, running_dnsmasq
from tests.support.dns_server import DnsServer, Fault, ThreadedDnsServer, Transport

SERVICE = "h2o.default.svc.cluster.local."
SHORT = 0.3  # seconds: lifetime for queries that are expected to go unanswered


def addresses(count: int, prefix: str = "10.0") -> list[str]:
    """``count`` distinct IPv4 addresses under ``prefix`` (a /16)."""
    return [f"{prefix}.{i // 250}.{i % 250 + 1}" for i in range(count)]


def resolver_for(host: str, port: int, lifetime: float = 2.0) -> dns.asyncresolver.Resolver:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = port
    resolver.timeout = resolver.lifetime = lifetime
    return resolver


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def wait_until(condition: Callable[[], bool], deadline: float = 2.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"condition not met within {deadline} s")
        await asyncio.sleep(0.01)


async def udp_query(server: DnsServer, name: str, rdtype: str, **kw: int) -> dns.message.Message:
    """One raw UDP query (no retries, no TCP fallback); ``kw`` go to ``make_query`` (EDNS)."""
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    return await dns.asyncquery.udp(query, server.host, port=server.port, timeout=2.0)


def ips(answer: dns.resolver.Answer) -> set[str]:
    assert answer.rrset is not None
    return {rdata.to_text() for rdata in answer.rrset}


@pytest.fixture
async def server() -> AsyncIterator[DnsServer]:
    async with DnsServer("127.0.0.1", zone="cluster.local.") as running:
        yield running


@pytest.fixture
def resolver(server: DnsServer) -> dns.asyncresolver.Resolver:
    return resolver_for(server.host, server.port)


# -- answers --------------------------------------------------------------------------------------


async def test_a_records(server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    """An A query gets every address set, authoritatively, with the configured TTL."""
    server.set_records(SERVICE, a=["10.0.0.1", "10.0.0.2"])
    answer = await resolver.resolve(SERVICE, "A")
    assert ips(answer) == {"10.0.0.1", "10.0.0.2"}
    assert answer.rrset is not None
    assert answer.rrset.ttl == 5
    assert answer.response.flags & dns.flags.AA


async def test_aaaa_records(server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    """An AAAA query gets the IPv6 addresses set, and only those."""
    server.set_records(SERVICE, a=["10.0.0.1"], aaaa=["fd00::1", "fd00::2"])
    assert ips(await resolver.resolve(SERVICE, "AAAA")) == {"fd00::1", "fd00::2"}


async def test_srv_with_target_addresses(
    server: DnsServer, resolver: dns.asyncresolver.Resolver
) -> None:
    """An SRV answer lists the targets and carries their addresses in the additional section."""
    pods = [f"h2o-{i}.h2o.default.svc.cluster.local." for i in range(3)]
    for i, pod in enumerate(pods):
        server.set_records(pod, a=[f"10.0.0.{i + 1}"])
    server.set_records(SERVICE, srv=[(0, 100, 54321, pod) for pod in pods])
    answer = await resolver.resolve(SERVICE, "SRV")
    assert answer.rrset is not None
    assert {rdata.target.to_text() for rdata in answer.rrset} == set(pods)
    assert {rdata.port for rdata in answer.rrset} == {54321}
    additional = {rrset.name.to_text(): rrset[0].to_text() for rrset in answer.response.additional}
    assert additional == {pod: f"10.0.0.{i + 1}" for i, pod in enumerate(pods)}


async def test_names_are_case_insensitive(
    server: DnsServer, resolver: dns.asyncresolver.Resolver
) -> None:
    """A name set in one case answers queries in any case, with or without the trailing dot."""
    server.set_records("H2O.Default.SVC.cluster.local", a=["10.0.0.1"])
    assert ips(await resolver.resolve("h2o.default.svc.CLUSTER.local.", "A")) == {"10.0.0.1"}


async def test_runtime_changes(server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    """Setting, replacing and removing records shows on the very next query."""
    server.set_records(SERVICE, a=["10.0.0.1"])
    assert ips(await resolver.resolve(SERVICE, "A")) == {"10.0.0.1"}
    server.set_records(SERVICE, a=["10.0.0.2", "10.0.0.3"])
    assert ips(await resolver.resolve(SERVICE, "A")) == {"10.0.0.2", "10.0.0.3"}
    server.remove(SERVICE)
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver.resolve(SERVICE, "A")
    server.set_records(SERVICE, a=["10.0.0.4"])
    server.clear()
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver.resolve(SERVICE, "A")


async def test_unknown_name_is_nxdomain_with_soa(server: DnsServer) -> None:
    """An unknown name gets NXDOMAIN with the zone's SOA in the authority section."""
    response = await udp_query(server, "nope.default.svc.cluster.local.", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.answer == []
    assert [rrset.rdtype for rrset in response.authority] == [dns.rdatatype.SOA]
    assert response.authority[0].name.to_text() == "cluster.local."


async def test_known_name_missing_type_is_nodata(
    server: DnsServer, resolver: dns.asyncresolver.Resolver
) -> None:
    """A known name without records of the asked type gets NOERROR and an empty answer."""
    server.set_records(SERVICE, a=["10.0.0.1"])
    response = await udp_query(server, SERVICE, "AAAA")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []
    assert [rrset.rdtype for rrset in response.authority] == [dns.rdatatype.SOA]
    with pytest.raises(dns.resolver.NoAnswer):
        await resolver.resolve(SERVICE, "SRV")


async def test_name_without_records_exists(
    server: DnsServer, resolver: dns.asyncresolver.Resolver
) -> None:
    """A name set with no records, and an ancestor of a set name, answer NODATA, not NXDOMAIN."""
    server.set_records(SERVICE)
    server.set_records("h2o-0.h2o.ns.svc.cluster.local.", a=["10.0.0.1"])
    for name in (SERVICE, "h2o.ns.svc.cluster.local.", "svc.cluster.local."):
        with pytest.raises(dns.resolver.NoAnswer):
            await resolver.resolve(name, "A")


async def test_unsupported_type_answered_at_once(server: DnsServer) -> None:
    """A reverse (PTR) lookup gets an immediate NXDOMAIN, and TXT on a known name NODATA."""
    server.set_records(SERVICE, a=["10.0.0.1"])
    reverse = await udp_query(server, "1.0.0.10.in-addr.arpa.", "PTR")
    assert reverse.rcode() == dns.rcode.NXDOMAIN
    txt = await udp_query(server, SERVICE, "TXT")
    assert (txt.rcode(), txt.answer) == (dns.rcode.NOERROR, [])


async def test_cname_chain(server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    """A CNAME chain inside the server's data is followed and put in the answer, in order."""
    server.set_records("alias.cluster.local.", cname="middle.cluster.local.")
    server.set_records("middle.cluster.local.", cname=SERVICE)
    server.set_records(SERVICE, a=["10.0.0.1"])
    answer = await resolver.resolve("alias.cluster.local.", "A")
    assert ips(answer) == {"10.0.0.1"}
    chain = [(rrset.name.to_text(), rrset.rdtype) for rrset in answer.response.answer]
    assert chain == [
        ("alias.cluster.local.", dns.rdatatype.CNAME),
        ("middle.cluster.local.", dns.rdatatype.CNAME),
        (SERVICE, dns.rdatatype.A),
    ]
    cname = await resolver.resolve("alias.cluster.local.", "CNAME")
    assert ips(cname) == {"middle.cluster.local."}


async def test_dangling_cname_is_nxdomain(server: DnsServer) -> None:
    """A CNAME to an unknown name answers the CNAME with NXDOMAIN, the last name's rcode."""
    server.set_records("alias.cluster.local.", cname="gone.cluster.local.")
    response = await udp_query(server, "alias.cluster.local.", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.rdtype for rrset in response.answer] == [dns.rdatatype.CNAME]


async def test_cname_loop_is_servfail(server: DnsServer) -> None:
    """A CNAME loop ends in SERVFAIL instead of hanging the server."""
    server.set_records("a.cluster.local.", cname="b.cluster.local.")
    server.set_records("b.cluster.local.", cname="a.cluster.local.")
    response = await udp_query(server, "a.cluster.local.", "A")
    assert response.rcode() == dns.rcode.SERVFAIL


def test_invalid_records_are_rejected() -> None:
    """Bad addresses, names and CNAMEs mixed with other data raise ValueError at once."""
    server = DnsServer()
    with pytest.raises(ValueError, match="not-an-ip"):
        server.set_records(SERVICE, a=["not-an-ip"])
    with pytest.raises(ValueError, match="fd00::1"):
        server.set_records(SERVICE, a=["fd00::1"])
    with pytest.raises(ValueError, match="CNAME"):
        server.set_records(SERVICE, a=["10.0.0.1"], cname="other.")
    with pytest.raises(ValueError, match="host="):
        DnsServer("localhost")
    with pytest.raises(RuntimeError, match="start"):
        _ = server.port


# -- size limits and TCP --------------------------------------------------------------------------


async def test_large_udp_answer_is_truncated_and_empty(server: DnsServer) -> None:
    """An answer over 512 bytes comes back over UDP with TC set and no records at all."""
    server.set_records(SERVICE, a=addresses(1000))
    response = await udp_query(server, SERVICE, "A")
    assert response.flags & dns.flags.TC
    assert response.answer == []
    assert server.stats.truncated == 1


async def test_edns_payload_sets_udp_limit(server: DnsServer) -> None:
    """An EDNS payload of 1232 lets 60 A records through UDP, while 512 bytes truncates them."""
    server.set_records(SERVICE, a=addresses(60))
    plain = await udp_query(server, SERVICE, "A")
    edns = await udp_query(server, SERVICE, "A", use_edns=0, payload=1232)
    assert plain.flags & dns.flags.TC
    assert not edns.flags & dns.flags.TC
    assert len(edns.answer[0]) == 60


async def test_resolver_falls_back_to_tcp(
    server: DnsServer, resolver: dns.asyncresolver.Resolver
) -> None:
    """1000 A records: UDP is truncated and the resolver's TCP retry gets every one of them."""
    server.set_records(SERVICE, a=addresses(1000))
    answer = await resolver.resolve(SERVICE, "A")
    assert ips(answer) == set(addresses(1000))
    stats = server.stats
    assert (stats.udp, stats.tcp, stats.truncated) == (1, 1, 1)
    transports = [question.transport for question in server.questions()]
    assert transports == [Transport.UDP, Transport.TCP]


async def test_additional_section_dropped_before_truncating(server: DnsServer) -> None:
    """An SRV answer that fits only without its additional section is sent without it, no TC."""
    pods = [f"h2o-{i}.h2o.default.svc.cluster.local." for i in range(8)]
    for i, pod in enumerate(pods):
        server.set_records(pod, a=addresses(10, prefix=f"10.{i}"))
    server.set_records(SERVICE, srv=[(0, 100, 54321, pod) for pod in pods])
    response = await udp_query(server, SERVICE, "SRV")
    assert not response.flags & dns.flags.TC
    assert len(response.answer[0]) == 8
    assert response.additional == []


async def test_tcp_connection_serves_several_queries_in_pieces(server: DnsServer) -> None:
    """One TCP connection answers several queries, even when they arrive a byte at a time."""
    server.set_records(SERVICE, a=["10.0.0.1"])
    queries = [dns.message.make_query(SERVICE, "A") for _ in range(3)]
    stream = b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in queries))
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        for i in range(len(stream)):
            writer.write(stream[i : i + 1])
            await writer.drain()
        for query in queries:
            (size,) = struct.unpack("!H", await reader.readexactly(2))
            response = dns.message.from_wire(await reader.readexactly(size))
            assert query.is_response(response)
            assert response.answer[0][0].to_text() == "10.0.0.1"
    finally:
        writer.close()
        await writer.wait_closed()
    assert server.stats.tcp == 3
    assert server.stats.tcp_connections == 1


# -- faults ---------------------------------------------------------------------------------------


async def test_fault_servfail(server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    """SERVFAIL makes a one-server resolver give up at once with NoNameservers."""
    server.set_records(SERVICE, a=["10.0.0.1"])
    server.fault = Fault.SERVFAIL
    with pytest.raises(dns.resolver.NoNameservers):
        await resolver.resolve(SERVICE, "A")
    assert (await udp_query(server, SERVICE, "A")).rcode() == dns.rcode.SERVFAIL


async def test_fault_refused(server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    """REFUSED reaches the client as that rcode, and the resolver gives up with NoNameservers."""
    server.fault = Fault.REFUSED
    assert (await udp_query(server, SERVICE, "A")).rcode() == dns.rcode.REFUSED
    with pytest.raises(dns.resolver.NoNameservers):
        await resolver.resolve(SERVICE, "A")


async def test_fault_drop(server: DnsServer) -> None:
    """DROP never answers, so the resolver runs out of lifetime; OK heals it."""
    server.set_records(SERVICE, a=["10.0.0.1"])
    server.fault = Fault.DROP
    with pytest.raises(dns.resolver.LifetimeTimeout):
        await resolver_for(server.host, server.port, SHORT).resolve(SERVICE, "A")
    assert server.stats.udp >= 1
    server.fault = Fault.OK
    assert ips(await resolver_for(server.host, server.port).resolve(SERVICE, "A")) == {"10.0.0.1"}


async def test_fault_slow(server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    """SLOW answers correctly after ``delay`` seconds."""
    server.set_records(SERVICE, a=["10.0.0.1"])
    server.fault = Fault.SLOW
    server.delay = SHORT
    start = time.monotonic()
    assert ips(await resolver.resolve(SERVICE, "A")) == {"10.0.0.1"}
    assert time.monotonic() - start >= SHORT


async def test_slow_name_does_not_hold_up_others(
    server: DnsServer, resolver: dns.asyncresolver.Resolver
) -> None:
    """A per-name SLOW override delays that name only; other queries answer meanwhile."""
    server.set_records(SERVICE, a=["10.0.0.1"])
    server.set_records("fast.cluster.local.", a=["10.0.0.2"])
    server.set_name_fault(SERVICE, Fault.SLOW)
    server.delay = 0.5
    slow = asyncio.ensure_future(resolver.resolve(SERVICE, "A"))
    await wait_until(lambda: server.stats.udp == 1)
    assert ips(await resolver.resolve("fast.cluster.local.", "A")) == {"10.0.0.2"}
    assert not slow.done()
    assert ips(await slow) == {"10.0.0.1"}
    server.set_name_fault(SERVICE, None)
    assert server.fault is Fault.OK


async def test_per_name_fault_overrides_server_fault(
    server: DnsServer, resolver: dns.asyncresolver.Resolver
) -> None:
    """A per-name fault applies to that name only and wins over the server-wide fault."""
    server.set_records(SERVICE, a=["10.0.0.1"])
    server.set_records("other.cluster.local.", a=["10.0.0.2"])
    server.set_name_fault("other.cluster.local.", Fault.SERVFAIL)
    assert ips(await resolver.resolve(SERVICE, "A")) == {"10.0.0.1"}
    with pytest.raises(dns.resolver.NoNameservers):
        await resolver.resolve("other.cluster.local.", "A")
    server.fault = Fault.SERVFAIL
    server.set_name_fault(SERVICE, Fault.OK)
    assert ips(await resolver.resolve(SERVICE, "A")) == {"10.0.0.1"}


async def test_fault_truncate_always(
    server: DnsServer, resolver: dns.asyncresolver.Resolver
) -> None:
    """TRUNCATE_ALWAYS sets TC on even a tiny UDP answer; the resolver gets it over TCP."""
    server.set_records(SERVICE, a=["10.0.0.1"])
    server.fault = Fault.TRUNCATE_ALWAYS
    assert ips(await resolver.resolve(SERVICE, "A")) == {"10.0.0.1"}
    assert server.stats.truncated == 1
    assert server.stats.tcp == 1


@pytest.mark.parametrize("fault", [Fault.GARBAGE, Fault.WRONG_ID])
async def test_fault_bad_reply(server: DnsServer, fault: Fault) -> None:
    """GARBAGE and WRONG_ID make a raw query fail and a resolver (which skips them) time out."""
    server.set_records(SERVICE, a=["10.0.0.1"])
    server.fault = fault
    with pytest.raises(dns.exception.DNSException):
        await udp_query(server, SERVICE, "A")
    with pytest.raises(dns.resolver.LifetimeTimeout):
        await resolver_for(server.host, server.port, SHORT).resolve(SERVICE, "A")
    with pytest.raises(dns.resolver.NoNameservers):
        await resolver_for(server.host, server.port).resolve(SERVICE, "A", tcp=True)


async def test_tcp_disabled_with_truncation_fails(
    server: DnsServer, resolver: dns.asyncresolver.Resolver
) -> None:
    """With TCP disabled a truncated answer cannot be completed: the resolver fails."""
    server.set_records(SERVICE, a=addresses(1000))
    server.tcp_enabled = False
    with pytest.raises(dns.resolver.NoNameservers):
        await resolver.resolve(SERVICE, "A")
    assert server.stats.tcp_connections == 1
    assert server.stats.tcp == 0
    server.tcp_enabled = True
    assert len(ips(await resolver.resolve(SERVICE, "A"))) == 1000


async def test_stop_drops_pending_slow_answers() -> None:
    """Stopping with a slow answer pending returns promptly and leaves nothing running."""
    server = DnsServer()
    await server.start()
    server.fault = Fault.SLOW
    server.delay = 60.0
    query = asyncio.ensure_future(udp_query(server, SERVICE, "A"))
    await wait_until(lambda: server.stats.udp == 1)
    start = time.monotonic()
    await server.stop()
    assert time.monotonic() - start < 1.0
    query.cancel()
    with pytest.raises(asyncio.CancelledError):
        await query


# -- robustness -----------------------------------------------------------------------------------


def exchange(sock: socket.socket, packets: list[bytes], port: int) -> bytes:
    """Send ``packets`` in order and return the first datagram that comes back."""
    for packet in packets:
        sock.sendto(packet, ("127.0.0.1", port))
    return sock.recv(65535)


@pytest.fixture(scope="module")
def threaded() -> Iterator[DnsServer]:
    with ThreadedDnsServer("127.0.0.1") as running:
        running.set_records(SERVICE, a=["10.0.0.1"])
        yield running


@pytest.fixture
def udp_socket() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        yield sock


def test_malformed_udp_packets(threaded: DnsServer, udp_socket: socket.socket) -> None:
    """A short packet is dropped, a bad one gets FORMERR, and the server still answers after."""
    threaded.reset_stats()
    query = dns.message.make_query(SERVICE, "A")
    first = exchange(udp_socket, [b"\x00\x01junk", query.to_wire()], threaded.port)
    assert query.is_response(dns.message.from_wire(first))
    bad = query.to_wire()[:-3]  # question cut short
    formerr = dns.message.from_wire(exchange(udp_socket, [bad], threaded.port))
    assert formerr.id == query.id
    assert formerr.rcode() == dns.rcode.FORMERR
    response = dns.query.udp(query, "127.0.0.1", port=threaded.port, timeout=2.0)
    assert response.answer[0][0].to_text() == "10.0.0.1"
    assert threaded.stats.malformed == 2


def test_reply_shaped_packets_are_not_answered(
    threaded: DnsServer, udp_socket: socket.socket
) -> None:
    """A packet with QR set (a response) is never answered, so two servers cannot ping-pong."""
    response = dns.message.make_response(dns.message.make_query(SERVICE, "A"))
    query = dns.message.make_query(SERVICE, "A")
    first = exchange(udp_socket, [response.to_wire(), query.to_wire()], threaded.port)
    assert query.is_response(dns.message.from_wire(first))


def test_malformed_tcp_frame_keeps_connection(threaded: DnsServer) -> None:
    """A malformed TCP frame gets FORMERR and the same connection then answers a real query."""
    query = dns.message.make_query(SERVICE, "A")
    bad = query.to_wire()[:-3]
    with socket.create_connection(("127.0.0.1", threaded.port), timeout=2.0) as sock:
        sock.sendall(struct.pack("!H", len(bad)) + bad)
        formerr, _ = dns.query.receive_tcp(sock, time.time() + 2.0)
        assert formerr.rcode() == dns.rcode.FORMERR
        dns.query.send_tcp(sock, query)
        response, _ = dns.query.receive_tcp(sock, time.time() + 2.0)
    assert response.answer[0][0].to_text() == "10.0.0.1"


def mutate(wire: bytes, edits: list[tuple[int, int]]) -> bytes:
    data = bytearray(wire)
    for position, value in edits:
        data[position % len(data)] = value
    return bytes(data)


VALID_QUERY = dns.message.make_query(SERVICE, "SRV", use_edns=0).to_wire()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    packet=st.one_of(
        st.binary(max_size=300),
        st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255)), max_size=6).map(
            lambda edits: mutate(VALID_QUERY, edits)
        ),
    )
)
def test_fuzzed_packets_never_kill_the_server(threaded: DnsServer, packet: bytes) -> None:
    """Whatever bytes arrive, the next well-formed query is still answered."""
    query = dns.message.make_query(SERVICE, "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.sendto(packet, ("127.0.0.1", threaded.port))
        sock.sendto(query.to_wire(), ("127.0.0.1", threaded.port))
        while True:  # the fuzzed packet may itself be answered (FORMERR or a real answer)
            reply = dns.message.from_wire(sock.recv(65535))
            if query.is_response(reply):
                break
    assert reply.answer[0][0].to_text() == "10.0.0.1"


# -- ways to run ----------------------------------------------------------------------------------


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback (::1) here")
async def test_ipv6_loopback() -> None:
    """The server binds ::1 and answers over UDP and TCP there."""
    async with DnsServer("::1") as server:
        server.set_records(SERVICE, aaaa=["fd00::1"])
        server.fault = Fault.TRUNCATE_ALWAYS
        resolver = resolver_for("::1", server.port)
        assert ips(await resolver.resolve(SERVICE, "AAAA")) == {"fd00::1"}
        assert (server.stats.udp, server.stats.tcp) == (1, 1)


async def test_fixed_port_shared_by_udp_and_tcp() -> None:
    """A given port is used for both transports, and a second server on it fails to start."""
    async with DnsServer() as first:
        second = DnsServer(port=first.port)
        with pytest.raises(OSError, match="in use"):
            await second.start()
    async with DnsServer(port=first.port) as again:
        assert again.port == first.port


def test_threaded_server_from_sync_code() -> None:
    """ThreadedDnsServer serves synchronous clients and takes record changes from this thread."""
    with ThreadedDnsServer("127.0.0.1") as server:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [server.host]
        resolver.port = server.port
        server.set_records(SERVICE, a=addresses(100))
        answer = resolver.resolve(SERVICE, "A")
        assert answer.rrset is not None
        assert len(answer.rrset) == 100
        server.remove(SERVICE)
        with pytest.raises(dns.resolver.NXDOMAIN):
            resolver.resolve(SERVICE, "A")
        port = server.port
    with pytest.raises(dns.exception.DNSException):
        dns.query.udp(dns.message.make_query(SERVICE, "A"), "127.0.0.1", port=port, timeout=SHORT)


def test_threaded_server_start_failure_is_raised() -> None:
    """A ThreadedDnsServer that cannot bind raises from ``start`` and leaves no thread behind."""
    with ThreadedDnsServer() as first:
        second = ThreadedDnsServer(port=first.port)
        with pytest.raises(OSError, match="in use"):
            second.start()
        second.stop()  # a no-op after a failed start


# -- dnsmasq --------------------------------------------------------------------------------------


@requires_dnsmasq
async def test_dnsmasq_600_records_through_tcp_fallback(tmp_path: Path) -> None:
    """dnsmasq truncates 600 A records over UDP, and the resolver's TCP retry gets all 600."""
    with running_dnsmasq({SERVICE: addresses(600)}, tmp_path) as (host, port):
        query = dns.message.make_query(SERVICE, "A", use_edns=0, payload=4096)
        udp = await dns.asyncquery.udp(query, host, port=port, timeout=2.0)
        assert udp.flags & dns.flags.TC
        answer = await resolver_for(host, port).resolve(SERVICE, "A")
    assert ips(answer) == set(addresses(600))
    assert answer.rrset is not None
    assert answer.rrset.ttl == 5


@requires_dnsmasq
def test_dnsmasq_caps_tcp_answers_at_64k(tmp_path: Path) -> None:
    """dnsmasq sends only what fits in 64 KiB (~4090 A records) even over TCP, and sets TC."""
    with running_dnsmasq({"big.test.": addresses(4500)}, tmp_path) as (host, port):
        query = dns.message.make_query("big.test.", "A")
        response = dns.query.tcp(query, host, port=port, timeout=5.0)
    assert response.flags & dns.flags.TC
    assert 4000 < len(response.answer[0]) < 4500
