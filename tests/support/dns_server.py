"""The tests' authoritative DNS server: a Kubernetes headless Service at its best and worst.

It speaks the real wire protocol over UDP and TCP on one port, so the discovery code is tested
through an unmodified resolver: no patched resolvers, no mocks. Records
change at runtime from any thread, like endpoints coming and going, and ``fault`` makes the
server misbehave the way a cluster DNS does at its worst (SERVFAIL while CoreDNS syncs, silence,
slowness, truncation without TCP, garbage, mismatched ids).

Decisions worth knowing:

- A name exists from ``set_records`` until ``remove``, even with no records at all: a query
  for it gets NODATA (NOERROR, empty answer), a query for an unknown name NXDOMAIN. Both carry
  the zone's SOA in the authority section, as a real authoritative server sends for negative
  caching. An ancestor of a stored name (an "empty non-terminal") also gets NODATA.
- CNAMEs are followed inside the server's own data and the chain is put in the answer; the
  rcode describes the last name of the chain (RFC 6604), so a dangling CNAME gives NXDOMAIN.
- A UDP answer larger than the client's payload (512 bytes without EDNS) first loses its
  additional section, then, if still too big, is sent with TC set and *no* records at all,
  so a client has nothing partial to misuse and must retry over TCP. (dnsmasq, by contrast,
  sends as many records as fit along with TC.) TCP answers are complete up to 64 KiB.
- Only A, AAAA, SRV and CNAME are served; any other type (PTR for reverse lookups, say) gets an
  immediate NXDOMAIN or NODATA, never silence, so clients do not wait out timeouts.
- Faults are chosen per query, from a per-name override or else the server-wide ``fault``.
  A slow answer is delayed without blocking other UDP clients. With ``tcp_enabled`` false a
  TCP connection is accepted and closed at once: the client reads EOF and gives up.
- ``ThreadedDnsServer`` runs the same server on a private event loop in a thread, for
  synchronous callers; the record and fault methods are safe to call from any thread.
- Records are converted to rdata when they are set, so bad input fails in the caller's thread
  with ``ValueError`` and queries only copy prebuilt data under a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import ipaddress
import logging
import os
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from k8s_sim.dns import ServerThread

logger = logging.getLogger(__name__)

A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA
CNAME = dns.rdatatype.CNAME
SRV = dns.rdatatype.SRV
SOA = dns.rdatatype.SOA
IN = dns.rdataclass.IN

UDP_PAYLOAD_WITHOUT_EDNS = 512
TCP_MAX_MESSAGE = 65535
MAX_CNAME_CHAIN = 8
BIND_ATTEMPTS = 5
QUESTION_LOG_SIZE = 10_000
HEADER_SIZE = 12


class Fault(enum.Enum):
    """How the server (mis)behaves for a query."""

    OK = "ok"
    """Answer correctly."""
    DROP = "drop"
    """Never answer (the client times out)."""
    SERVFAIL = "servfail"
    """Answer SERVFAIL, as CoreDNS does before its kubernetes plugin has synced."""
    REFUSED = "refused"
    """Answer REFUSED."""
    SLOW = "slow"
    """Answer correctly after ``DnsServer.delay`` seconds."""
    TRUNCATE_ALWAYS = "truncate_always"
    """Answer every UDP query with TC set and no records; TCP answers stay complete."""
    GARBAGE = "garbage"
    """Send bytes that carry the query's id but do not parse as a DNS message."""
    WRONG_ID = "wrong_id"
    """Send a correct answer under another message id."""


class Transport(enum.Enum):
    """The transport a query arrived on."""

    UDP = "udp"
    TCP = "tcp"


@dataclass(frozen=True, slots=True)
class Stats:
    """Counters since start (or ``reset_stats``); a snapshot, safe to keep."""

    udp: int = 0
    """Queries received over UDP (parsed ones only)."""
    tcp: int = 0
    """Queries received over TCP (parsed ones only)."""
    tcp_connections: int = 0
    """TCP connections accepted, including those closed at once because TCP is disabled."""
    truncated: int = 0
    """Answers sent with TC set (over UDP; over TCP only beyond 64 KiB)."""
    malformed: int = 0
    """Packets that did not parse as a DNS query (answered FORMERR when possible)."""


@dataclass(frozen=True, slots=True)
class Question:
    """One query as received: transport, name (lower case, absolute) and type (``"SRV"``)."""

    transport: Transport
    name: str
    rdtype: str


@dataclass(frozen=True, slots=True)
class _Node:
    """The records of one name, prebuilt as rdata."""

    rdatas: Mapping[dns.rdatatype.RdataType, tuple[dns.rdata.Rdata, ...]]
    cname: dns.name.Name | None = None
    srv_targets: tuple[dns.name.Name, ...] = ()


@dataclass(frozen=True, slots=True)
class _Reply:
    """Bytes to send back and how long to wait first."""

    wire: bytes
    delay: float = 0.0


@dataclass(slots=True)
class _Counters:
    udp: int = 0
    tcp: int = 0
    tcp_connections: int = 0
    truncated: int = 0
    malformed: int = 0
    questions: deque[Question] = field(default_factory=lambda: deque(maxlen=QUESTION_LOG_SIZE))


def _name(text: str) -> dns.name.Name:
    """An absolute name from text; a name without a trailing dot is taken as absolute too."""
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as err:
        raise ValueError(f"{text!r} is not a valid DNS name: {err}") from err


def _rdata(rdtype: dns.rdatatype.RdataType, text: str) -> dns.rdata.Rdata:
    try:
        return dns.rdata.from_text(IN, rdtype, text)
    except dns.exception.DNSException as err:
        kind = dns.rdatatype.to_text(rdtype)
        raise ValueError(f"{text!r} is not valid {kind} record data: {err}") from err


def _build_node(
    a: Iterable[str],
    aaaa: Iterable[str],
    srv: Iterable[tuple[int, int, int, str]],
    cname: str | None,
) -> _Node:
    rdatas = {
        A: tuple(_rdata(A, ip) for ip in a),
        AAAA: tuple(_rdata(AAAA, ip) for ip in aaaa),
    }
    srv_list = list(srv)
    targets = tuple(dict.fromkeys(_name(target) for *_, target in srv_list))
    rdatas[SRV] = tuple(
        _rdata(SRV, f"{prio} {weight} {port} {_name(target)}")
        for prio, weight, port, target in srv_list
    )
    rdatas = {rdtype: values for rdtype, values in rdatas.items() if values}
    if cname is None:
        return _Node(rdatas, None, targets)
    if rdatas:
        raise ValueError("a name with a CNAME can have no other records (RFC 1034 3.6.2)")
    target = _name(cname)
    return _Node({CNAME: (_rdata(CNAME, str(target)),)}, target)


def _parse_query(data: bytes) -> dns.message.Message:
    """The query in ``data``; raises if it is not a query with exactly one question."""
    query = dns.message.from_wire(data)
    if query.flags & dns.flags.QR or len(query.question) != 1:
        raise ValueError("not a query with exactly one question")
    return query


def _garbage(query_id: int) -> bytes:
    """A reply-shaped header promising 65535 questions, then a few random bytes: never parses."""
    header = struct.pack("!HHHHHH", query_id, 0x8180, 0xFFFF, 0xFFFF, 0, 0)
    return header + os.urandom(16)


def _formerr(data: bytes) -> bytes | None:
    """FORMERR for a packet whose header is readable and is not itself a response."""
    if len(data) < HEADER_SIZE:
        return None
    query_id, flags = struct.unpack("!HH", data[:4])
    if flags & dns.flags.QR:
        return None
    message = dns.message.Message(id=query_id)
    message.flags = dns.flags.QR
    message.set_rcode(dns.rcode.FORMERR)
    return message.to_wire()


def _payload_limit(query: dns.message.Message, transport: Transport) -> int:
    if transport is Transport.TCP:
        return TCP_MAX_MESSAGE
    if query.edns < 0:
        return UDP_PAYLOAD_WITHOUT_EDNS
    return max(UDP_PAYLOAD_WITHOUT_EDNS, query.payload)


def _truncated(query: dns.message.Message) -> dns.message.Message:
    """The answer skeleton with TC set and no records: "ask me again over TCP"."""
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA | dns.flags.TC
    return response


def _render(
    query: dns.message.Message, response: dns.message.Message, limit: int
) -> tuple[bytes, bool]:
    """Wire form within ``limit`` bytes and whether it had to be truncated."""
    with contextlib.suppress(dns.exception.TooBig):
        return response.to_wire(max_size=limit), False
    if response.additional:
        response.additional = []
        with contextlib.suppress(dns.exception.TooBig):
            return response.to_wire(max_size=limit), False
    return _truncated(query).to_wire(max_size=limit), True


def _check_host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError as err:
        raise ValueError(f"host={host!r}: give an IPv4 or IPv6 address literal") from err


class DnsServer:
    """Authoritative DNS over UDP and TCP on ``host``:``port`` (0 picks a free port).

    Use as ``async with DnsServer("127.0.0.1") as server:``, or call ``start``/``stop``.
    Record and fault methods are thread-safe; the server itself runs on one event loop.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, ttl: int = 5, zone: str = "."
    ) -> None:
        self._host = _check_host(host)
        self._requested_port = port
        self._port: int | None = None
        self.ttl = ttl
        """TTL of every record sent, in seconds (CoreDNS's kubernetes plugin uses 5)."""
        self.zone = _name(zone)
        """Apex of the SOA sent with negative answers for names inside it."""
        self.fault = Fault.OK
        """Server-wide fault; a per-name override (``set_name_fault``) wins."""
        self.delay = 1.0
        """Seconds a ``Fault.SLOW`` answer waits."""
        self.tcp_enabled = True
        """When false, TCP connections are closed as soon as they are accepted."""
        self._lock = threading.Lock()
        self._nodes: dict[dns.name.Name, _Node] = {}
        self._name_faults: dict[dns.name.Name, Fault] = {}
        self._serial = 1
        self._counters = _Counters()
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_protocol: _UdpProtocol | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- addresses ---------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address bound, as given (normalised)."""
        return self._host

    @property
    def port(self) -> int:
        """The port bound for both UDP and TCP; only known once started."""
        if self._port is None:
            raise RuntimeError("DnsServer.port is only known after start()")
        return self._port

    # -- records -----------------------------------------------------------------------------

    def set_records(
        self,
        name: str,
        *,
        a: Iterable[str] = (),
        aaaa: Iterable[str] = (),
        srv: Iterable[tuple[int, int, int, str]] = (),
        cname: str | None = None,
    ) -> None:
        """Replace every record of ``name``; ``srv`` items are (priority, weight, port, target).

        With no records at all the name still exists (queries for it get NODATA).
        Raises ``ValueError`` on an invalid name or address, or a CNAME mixed with other data.
        """
        key = _name(name)
        node = _build_node(a, aaaa, srv, cname)
        with self._lock:
            self._nodes[key] = node
            self._serial += 1

    def remove(self, name: str) -> None:
        """Forget ``name``: it answers NXDOMAIN from the next query on. Unknown names are fine."""
        key = _name(name)
        with self._lock:
            self._nodes.pop(key, None)
            self._serial += 1

    def clear(self) -> None:
        """Forget every name (fault settings stay)."""
        with self._lock:
            self._nodes.clear()
            self._serial += 1

    def set_name_fault(self, name: str, fault: Fault | None) -> None:
        """Apply ``fault`` to queries for exactly ``name``; ``None`` removes the override."""
        key = _name(name)
        with self._lock:
            if fault is None:
                self._name_faults.pop(key, None)
            else:
                self._name_faults[key] = fault

    # -- observation ---------------------------------------------------------------------------

    @property
    def stats(self) -> Stats:
        """A snapshot of the counters."""
        with self._lock:
            c = self._counters
            return Stats(c.udp, c.tcp, c.tcp_connections, c.truncated, c.malformed)

    def questions(self) -> tuple[Question, ...]:
        """The last queries received (up to 10 000), oldest first."""
        with self._lock:
            return tuple(self._counters.questions)

    def reset_stats(self) -> None:
        """Zero the counters and forget the questions."""
        with self._lock:
            self._counters = _Counters()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind UDP, then TCP on the same port; with port 0 retry if TCP's port is taken."""
        if self._udp is not None:
            raise RuntimeError("DnsServer already started")
        attempts = BIND_ATTEMPTS if self._requested_port == 0 else 1
        for attempt in range(1, attempts + 1):
            try:
                await self._bind()
            except OSError as err:
                if err.errno != errno.EADDRINUSE or attempt == attempts:
                    raise
                logger.debug("TCP port taken, binding again (attempt %d)", attempt)
            else:
                logger.debug("DNS server listening on %s port %d", self._host, self.port)
                return

    async def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        udp, protocol = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self._reply, self._track),
            local_addr=(self._host, self._requested_port),
        )
        port = int(udp.get_extra_info("sockname")[1])
        try:
            self._tcp = await asyncio.start_server(self._serve_tcp, self._host, port)
        except OSError:
            udp.close()
            await protocol.closed
            raise
        self._udp, self._udp_protocol, self._port = udp, protocol, port

    async def stop(self) -> None:
        """Close both sockets and every connection; pending slow answers are dropped."""
        if self._tcp is not None:
            self._tcp.close()
        if self._udp is not None:
            self._udp.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()
        if self._udp_protocol is not None:
            await self._udp_protocol.closed  # so the port can be bound again at once
        self._tcp = self._udp = self._udp_protocol = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- transports ----------------------------------------------------------------------------

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._track(task)
        with self._lock:
            self._counters.tcp_connections += 1
        try:
            if self.tcp_enabled:
                await self._tcp_queries(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed, possibly mid-message: nothing left to answer
        except asyncio.CancelledError:
            # stop() ends the connection. This task is the stream server's own callback, with
            # nobody awaiting it: letting the cancellation out only gets it logged as an error.
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _tcp_queries(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer length-prefixed queries in order until the client closes (IncompleteReadError)."""
        while True:
            (size,) = struct.unpack("!H", await reader.readexactly(2))
            reply = self._reply(await reader.readexactly(size), Transport.TCP)
            if reply is None:
                continue
            if reply.delay:
                await asyncio.sleep(reply.delay)
            writer.write(struct.pack("!H", len(reply.wire)) + reply.wire)
            await writer.drain()

    # -- answering -----------------------------------------------------------------------------

    def _reply(self, data: bytes, transport: Transport) -> _Reply | None:
        """What to send back for one packet, or None to stay silent."""
        try:
            query = _parse_query(data)
        except Exception as err:  # hostile input may make the parser raise anything: never crash
            logger.debug("malformed %s packet (%d bytes): %s", transport.value, len(data), err)
            with self._lock:
                self._counters.malformed += 1
            wire = _formerr(data)
            return None if wire is None else _Reply(wire)
        fault = self._note(query, transport)
        return self._faulty_reply(query, transport, fault)

    def _note(self, query: dns.message.Message, transport: Transport) -> Fault:
        """Count the query and return the fault that applies to it."""
        question = query.question[0]
        seen = Question(
            transport,
            question.name.to_text().lower(),
            dns.rdatatype.to_text(question.rdtype),
        )
        with self._lock:
            counters = self._counters
            if transport is Transport.UDP:
                counters.udp += 1
            else:
                counters.tcp += 1
            counters.questions.append(seen)
            return self._name_faults.get(question.name, self.fault)

    def _faulty_reply(
        self, query: dns.message.Message, transport: Transport, fault: Fault
    ) -> _Reply | None:
        if fault is Fault.DROP:
            return None
        if fault is Fault.GARBAGE:
            return _Reply(_garbage(query.id))
        if fault in (Fault.SERVFAIL, Fault.REFUSED):
            response = dns.message.make_response(query)
            rcode = dns.rcode.SERVFAIL if fault is Fault.SERVFAIL else dns.rcode.REFUSED
            response.set_rcode(rcode)
            return _Reply(response.to_wire())
        if fault is Fault.TRUNCATE_ALWAYS and transport is Transport.UDP:
            response = _truncated(query)
        else:
            response = self._answer(query)
        wire, truncated = _render(query, response, _payload_limit(query, transport))
        if fault is Fault.WRONG_ID:
            wire = struct.pack("!H", (query.id + 1) & 0xFFFF) + wire[2:]
        if truncated or response.flags & dns.flags.TC:
            with self._lock:
                self._counters.truncated += 1
        return _Reply(wire, self.delay if fault is Fault.SLOW else 0.0)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
        elif question.rdclass != IN:
            response.set_rcode(dns.rcode.REFUSED)
        else:
            with self._lock:
                self._resolve(response, question.name, question.rdtype)
        return response

    def _resolve(
        self, response: dns.message.Message, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> None:
        """Fill ``response`` from the records, following CNAMEs; caller holds the lock."""
        name = qname
        for _ in range(MAX_CNAME_CHAIN):
            node = self._nodes.get(name)
            if node is None:
                exists = name == qname and self._is_empty_non_terminal(name)
                self._negative(response, name, nxdomain=not exists)
                return
            if node.cname is not None and rdtype != CNAME:
                response.answer.append(self._rrset(name, node.rdatas[CNAME]))
                name = node.cname
                continue
            self._positive(response, name, rdtype, node)
            return
        logger.debug("CNAME chain from %s longer than %d", qname, MAX_CNAME_CHAIN)
        response.set_rcode(dns.rcode.SERVFAIL)

    def _positive(
        self,
        response: dns.message.Message,
        name: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        node: _Node,
    ) -> None:
        rdatas = node.rdatas.get(rdtype)
        if not rdatas:
            self._negative(response, name, nxdomain=False)
            return
        response.answer.append(self._rrset(name, rdatas))
        if rdtype == SRV:
            response.additional.extend(self._target_addresses(node.srv_targets))

    def _target_addresses(self, targets: Iterable[dns.name.Name]) -> list[dns.rrset.RRset]:
        rrsets = []
        for target in targets:
            node = self._nodes.get(target)
            if node is None:
                continue
            for rdtype in (A, AAAA):
                if rdatas := node.rdatas.get(rdtype):
                    rrsets.append(self._rrset(target, rdatas))
        return rrsets

    def _negative(
        self, response: dns.message.Message, name: dns.name.Name, *, nxdomain: bool
    ) -> None:
        if nxdomain:
            response.set_rcode(dns.rcode.NXDOMAIN)
        if name.is_subdomain(self.zone):
            response.authority.append(self._soa())

    def _is_empty_non_terminal(self, name: dns.name.Name) -> bool:
        return any(stored.is_subdomain(name) for stored in self._nodes)

    def _soa(self) -> dns.rrset.RRset:
        mname = dns.name.Name(("ns", *self.zone.labels))
        rname = dns.name.Name(("hostmaster", *self.zone.labels))
        text = f"{mname} {rname} {self._serial} 3600 600 86400 {self.ttl}"
        return self._rrset(self.zone, (_rdata(SOA, text),))

    def _rrset(self, name: dns.name.Name, rdatas: tuple[dns.rdata.Rdata, ...]) -> dns.rrset.RRset:
        return dns.rrset.from_rdata_list(name, self.ttl, rdatas)


class _UdpProtocol(asyncio.DatagramProtocol):
    """Answers each datagram; a delayed answer becomes a task so other clients are not held up."""

    def __init__(
        self,
        reply: Callable[[bytes, Transport], _Reply | None],
        track: Callable[[asyncio.Task[None]], None],
    ) -> None:
        self._reply = reply
        self._track = track
        self._transport: asyncio.DatagramTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Done once the socket is really closed (``transport.close`` only schedules it)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not isinstance: 3.11's selector transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = self._reply(data, Transport.UDP)
        if reply is None or self._transport is None:
            return
        if reply.delay:
            self._track(asyncio.ensure_future(self._send_later(reply, addr)))
        else:
            self._transport.sendto(reply.wire, addr)

    async def _send_later(self, reply: _Reply, addr: tuple[str | Any, int]) -> None:
        await asyncio.sleep(reply.delay)
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(reply.wire, addr)

    def error_received(self, exc: Exception) -> None:
        logger.debug("UDP socket error: %s", exc)  # e.g. ICMP port unreachable from a client

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class ThreadedDnsServer(ServerThread[DnsServer]):
    """A ``DnsServer`` running on its own event loop in a daemon thread.

    ``with ThreadedDnsServer("127.0.0.1") as server:`` yields the ``DnsServer``; its record and
    fault methods are thread-safe, so synchronous tests (and helpers serving other network
    namespaces) use it directly.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ttl: int = 5,
        zone: str = ".",
        start_timeout: float = 10.0,
    ) -> None:
        super().__init__(DnsServer(host, port, ttl=ttl, zone=zone), start_timeout=start_timeout)
