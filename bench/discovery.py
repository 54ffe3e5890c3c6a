"""Per-poll cost of the peer lookup for 3 to 5000 peers, against our DNS server and dnsmasq.

What: one ``poll_once`` (an A and an AAAA query for the headless Service, run together, the
answers turned into a sorted peer snapshot) with a resolver from ``make_resolver`` pointed at a
server on 127.0.0.1. Each size is polled N times after three unmeasured warm-up polls; the table
gives the wall time per poll (median, min, max), the client's own CPU time per poll (median;
the server runs in another process, so this is our code and dnspython alone), and peers per
millisecond of wall time.

Servers: the embedded ``DnsServer`` (a Python process of its own) and a real dnsmasq
(``k8s_sim/dnsmasq.py``). Beyond ~73 records the EDNS-1232 UDP answer is truncated and the
resolver asks again over TCP; the "transport" column is what a direct probe saw. A DNS message
holds at most 64 KiB, about 4090 A records: 5000 peers cannot be answered whole by *any* server
over one TCP message, so that row shows ``truncated`` (our code raises ``DnsQueryError`` kind
``truncated`` rather than use a partial set) and the time taken to find that out. 4000 is added
as the largest size that fits.

Growth: the exponent ``k`` of ``time ~ peers^k`` between 1000 and 4000 peers (1 = linear; both
sizes pay the same UDP-then-TCP fixed cost), and the extra milliseconds per 1000 more peers.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query

from bench._common import (
    Summary,
    dns_server_process,
    fmt,
    machine_note,
    markdown_table,
    progress,
    summarize,
)
from h2o_k8s_discovery.config.settings import LookupSettings, Nameserver
from h2o_k8s_discovery.discovery.query import EDNS_PAYLOAD, make_resolver, poll_once
from h2o_k8s_discovery.errors import DnsQueryError
from k8s_sim.dnsmasq import running_dnsmasq

SERVICE = "h2o-service.h2o-statefulset.svc.cluster.local"
SIZES = (3, 100, 1000, 4000, 5000)
WARMUP = 3
LIFETIME = 10.0


@dataclass(frozen=True, slots=True)
class Measurement:
    server: str
    peers: int
    transport: str
    polls: int
    wall: Summary | None
    cpu: Summary | None
    #: ``None`` when every poll returned the full snapshot; else the error kind seen.
    error: str | None


def addresses(count: int) -> list[str]:
    base = int(ipaddress.IPv4Address("10.42.0.1"))
    return [str(ipaddress.IPv4Address(base + i)) for i in range(count)]


def repetitions(peers: int, quick: bool) -> int:
    if peers >= 5000:
        return 3 if quick else 10
    if peers >= 4000:
        return 5 if quick else 20
    return 10 if quick else 30


def transport_used(host: str, port: int) -> str:
    """How a full answer travels: UDP, UDP then TCP, or not at all (TC even over TCP)."""
    query = dns.message.make_query(SERVICE + ".", "A", use_edns=0, payload=EDNS_PAYLOAD)
    try:
        if not dns.query.udp(query, host, port=port, timeout=5).flags & dns.flags.TC:
            return "UDP"
        if not dns.query.tcp(query, host, port=port, timeout=5).flags & dns.flags.TC:
            return "UDP→TCP"
    except (dns.exception.DNSException, OSError) as err:
        return f"error: {err}"
    return "UDP→TCP, TC"


async def measure(server: str, host: str, port: int, peers: int, reps: int) -> Measurement:
    settings = LookupSettings(
        service_dns=SERVICE,
        nameserver=Nameserver(ipaddress.ip_address(host), port),
        query_timeout=LIFETIME,
    )
    resolver = make_resolver(settings)
    walls: list[float] = []
    cpus: list[float] = []
    errors: set[str] = set()
    for attempt in range(WARMUP + reps):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            found = await poll_once(resolver, settings, LIFETIME)
        except DnsQueryError as err:
            errors.add(err.kind)
        else:
            if len(found) != peers:
                errors.add(f"{len(found)} of {peers} peers")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if attempt >= WARMUP:
            walls.append(wall)
            cpus.append(cpu)
    return Measurement(
        server=server,
        peers=peers,
        transport=transport_used(host, port),
        polls=reps,
        wall=summarize(walls),
        cpu=summarize(cpus),
        error=", ".join(sorted(errors)) or None,
    )


def bench_ours(peers: int, reps: int) -> Measurement:
    with dns_server_process({SERVICE: addresses(peers)}) as (host, port):
        return asyncio.run(measure("embedded DnsServer", host, port, peers, reps))


def bench_dnsmasq(peers: int, reps: int) -> Measurement:
    with (
        tempfile.TemporaryDirectory(prefix="bench-dnsmasq-") as tmp,
        running_dnsmasq({SERVICE: addresses(peers)}, Path(tmp)) as (host, port),
    ):
        return asyncio.run(measure("dnsmasq", host, port, peers, reps))


def growth_exponent(results: Sequence[Measurement], server: str) -> float | None:
    """``k`` in ``time ~ peers^k`` between 1000 and 4000 peers (both over TCP), from medians."""
    by_size = {m.peers: m for m in results if m.server == server and m.error is None}
    small, large = by_size.get(1000), by_size.get(4000)
    if small is None or large is None or small.wall is None or large.wall is None:
        return None
    return math.log(large.wall.median / small.wall.median) / math.log(4000 / 1000)


def row(m: Measurement) -> list[str]:
    wall, cpu = m.wall, m.cpu
    outcome = "complete" if m.error is None else m.error
    per_ms = "—"
    if m.error is None and wall is not None:
        per_ms = f"{m.peers / (wall.median * 1e3):.1f}"
    return [
        str(m.peers),
        m.server,
        m.transport,
        outcome,
        str(m.polls),
        fmt(None if wall is None else wall.median, 2, 1e3),
        fmt(None if wall is None else wall.low, 2, 1e3),
        fmt(None if wall is None else wall.high, 2, 1e3),
        fmt(None if cpu is None else cpu.median, 2, 1e3),
        per_ms,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer polls per size")
    args = parser.parse_args()
    results: list[Measurement] = []
    for peers in SIZES:
        reps = repetitions(peers, args.quick)
        progress(f"{peers} peers: embedded DnsServer, {reps} polls")
        results.append(bench_ours(peers, reps))
        progress(f"{peers} peers: dnsmasq, {reps} polls")
        results.append(bench_dnsmasq(peers, reps))

    print("## Discovery: cost of one DNS poll (`poll_once`, A + AAAA) on loopback\n")
    print(
        markdown_table(
            [
                "peers",
                "server",
                "transport",
                "result",
                "polls",
                "median ms",
                "min ms",
                "max ms",
                "client CPU ms (median)",
                "peers/ms",
            ],
            [row(m) for m in results],
        )
    )
    print(f"\n{machine_note()}")
    print(
        "\nTimes of `truncated` rows are the time taken to find out; client CPU is the benchmark "
        "process's own CPU time (the servers run in other processes)."
    )
    ours = growth_exponent(results, "embedded DnsServer")
    theirs = growth_exponent(results, "dnsmasq")
    slope = marginal_ms_per_1000(results, "dnsmasq")
    print(
        f"\nConclusion: cost grows linearly with the peer count (time ~ peers^k, k = "
        f"{fmt(ours, 2)} against our server, {fmt(theirs, 2)} against dnsmasq, 1000->4000 peers; "
        f"about {fmt(slope, 0)} ms more per extra 1000 peers against dnsmasq, nearly all of it "
        "client-side wire parsing); 5000 peers exceed one 64 KiB DNS message and are refused as "
        "truncated, never used partially."
    )


def marginal_ms_per_1000(results: Sequence[Measurement], server: str) -> float | None:
    """Extra milliseconds per 1000 more peers, from the medians at 1000 and 4000 peers."""
    by_size = {m.peers: m.wall for m in results if m.server == server and m.error is None}
    small, large = by_size.get(1000), by_size.get(4000)
    if small is None or large is None:
        return None
    return (large.median - small.median) * 1e3 / 3


if __name__ == "__main__":
    main()
