"""The demo's headless Service: a small authoritative DNS server on one UDP and TCP port.

It answers A, AAAA and SRV questions from records set at runtime (with the SRV targets' addresses
in the additional section, as CoreDNS does), so the demo's pods discover each other through the
same resolver code as on Kubernetes. Nothing else: no zones, no CNAMEs, no fault injection.

The one non-obvious decision: a question it cannot answer (an unknown name, another type, a PTR
from H2O's reverse lookups) gets NXDOMAIN or an empty answer at once, never silence, so that no
client waits out a timeout; and a UDP answer too large for the client's buffer is sent with TC
set and no records, so the resolver asks again over TCP instead of using a partial set.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import struct
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.IN.SRV import SRV

logger = logging.getLogger(__name__)

UDP_PAYLOAD_WITHOUT_EDNS = 512
TCP_MAX_MESSAGE = 65535
ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)

Records = dict[dns.rdatatype.RdataType, tuple[dns.rdata.Rdata, ...]]


def _absolute(name: str) -> dns.name.Name:
    return dns.name.from_text(name.rstrip(".") + ".")


def _records(
    a: Iterable[str], aaaa: Iterable[str], srv: Iterable[tuple[int, int, int, str]]
) -> Records:
    """Each record parsed once, here, so that bad input fails in the caller with ValueError."""
    texts = {
        dns.rdatatype.A: [str(ipaddress.IPv4Address(address)) for address in a],
        dns.rdatatype.AAAA: [str(ipaddress.IPv6Address(address)) for address in aaaa],
        dns.rdatatype.SRV: [
            f"{priority} {weight} {port} {_absolute(target)}"
            for priority, weight, port, target in srv
        ],
    }
    try:
        return {
            rdtype: tuple(dns.rdata.from_text(dns.rdataclass.IN, rdtype, text) for text in found)
            for rdtype, found in texts.items()
            if found
        }
    except dns.exception.DNSException as err:
        raise ValueError(f"invalid record: {err}") from err


class DnsServer:
    """A, AAAA and SRV answers on ``host``:``port`` over UDP and TCP (port 0 picks a free one).

    ``async with DnsServer("127.0.0.1") as server:``; ``set_records`` and ``remove`` may be
    called from any thread while it serves.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, ttl: int = 5) -> None:
        self.host = str(ipaddress.ip_address(host))
        self.ttl = ttl
        """Seconds every answer may be cached (CoreDNS's kubernetes plugin sends 5)."""
        self._requested_port = port
        self._port: int | None = None
        self._lock = threading.Lock()
        self._names: dict[dns.name.Name, Records] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        """The port bound for UDP and TCP; known once started."""
        if self._port is None:
            raise RuntimeError("DnsServer.port is only known after start()")
        return self._port

    def set_records(
        self,
        name: str,
        *,
        a: Iterable[str] = (),
        aaaa: Iterable[str] = (),
        srv: Iterable[tuple[int, int, int, str]] = (),
    ) -> None:
        """Replace the records of ``name``; ``srv`` items are (priority, weight, port, target)."""
        records = _records(a, aaaa, srv)
        with self._lock:
            self._names[_absolute(name)] = records

    def remove(self, name: str) -> None:
        """Forget ``name``: NXDOMAIN from the next question on."""
        with self._lock:
            self._names.pop(_absolute(name), None)

    async def start(self) -> None:
        """Bind UDP, then TCP on the port UDP got."""
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpAnswers(self._wire_answer), local_addr=(self.host, self._requested_port)
        )
        self._udp = udp
        self._port = int(udp.get_extra_info("sockname")[1])
        self._tcp = await asyncio.start_server(self._serve_tcp, self.host, self._port)

    async def stop(self) -> None:
        """Close both sockets and the open TCP connections."""
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._clients):
                writer.close()
            await self._tcp.wait_closed()
        self._udp = self._tcp = None

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

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                wire = self._wire_answer(await reader.readexactly(size), TCP_MAX_MESSAGE)
                if wire is not None:
                    writer.write(struct.pack("!H", len(wire)) + wire)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client is done, or went away mid-message
        finally:
            self._clients.discard(writer)
            writer.close()

    def _wire_answer(self, data: bytes, limit: int | None = None) -> bytes | None:
        """The answer to one query in wire format, or None for a packet that is no query."""
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException as err:
            logger.debug("not a DNS query (%d bytes): %s", len(data), err)
            return None
        if not query.question:
            return None
        response = self._answer(query)
        if limit is None:
            limit = query.payload if query.edns >= 0 else UDP_PAYLOAD_WITHOUT_EDNS
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer.clear()
            response.additional.clear()
            response.flags |= dns.flags.TC
            return response.to_wire()

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        with self._lock:
            records = self._names.get(question.name)
            if records is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
                return response
            found = records.get(question.rdtype, ())
            if found:
                response.answer.append(self._rrset(question.name, found))
            if question.rdtype == dns.rdatatype.SRV:
                response.additional.extend(self._addresses_of_targets(found))
        return response

    def _addresses_of_targets(self, srv: Iterable[dns.rdata.Rdata]) -> list[dns.rrset.RRset]:
        """The A and AAAA records of each SRV target known here; the caller holds the lock."""
        rrsets = []
        for record in srv:
            target = cast(SRV, record).target
            for rdtype in ADDRESS_TYPES:
                if found := self._names.get(target, {}).get(rdtype):
                    rrsets.append(self._rrset(target, found))
        return rrsets

    def _rrset(self, name: dns.name.Name, found: tuple[dns.rdata.Rdata, ...]) -> dns.rrset.RRset:
        return dns.rrset.from_rdata_list(name, self.ttl, found)


class _UdpAnswers(asyncio.DatagramProtocol):
    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self._answer = answer
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not isinstance: 3.11's selector transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        wire = self._answer(data)
        if wire is not None and self._transport is not None:
            with contextlib.suppress(OSError):
                self._transport.sendto(wire, addr)
