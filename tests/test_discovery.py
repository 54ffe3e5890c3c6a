"""The lookup against real DNS servers on loopback: our wire-protocol server and dnsmasq."""

from __future__ import annotations

import ipaddress
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from h2o_k8s_discovery.config.settings import LookupSettings, Nameserver, RecordType
from h2o_k8s_discovery.discovery.constraints import StopReason
from h2o_k8s_discovery.discovery.lookup import PollEvent, discover_peers
from h2o_k8s_discovery.flatfile.format import render_flatfile
from h2o_k8s_discovery.peers import Peer
from k8s_sim.dnsmasq import requires_dnsmasq, running_dnsmasq
from k8s_sim.net import free_port
from tests.support.dns_server import DnsServer, Fault

SERVICE = "h2o-service.h2o.svc.cluster.local"


def ips(count: int, prefix: str = "10.42") -> list[str]:
    return [f"{prefix}.{i // 250}.{i % 250 + 1}" for i in range(count)]


@pytest.fixture
async def dns() -> AsyncIterator[DnsServer]:
    async with DnsServer("127.0.0.1") as server:
        yield server


def settings_for(server: DnsServer | tuple[str, int], **changes: object) -> LookupSettings:
    host, port = (server.host, server.port) if isinstance(server, DnsServer) else server
    base = LookupSettings(
        service_dns=SERVICE,
        nameserver=Nameserver(ipaddress.ip_address(host), port),
        poll_interval=0.05,
        timeout=10.0,
        query_timeout=1.0,
        backoff_max=0.4,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def after_polls(count: int, action: Callable[[], None]) -> Callable[[PollEvent], None]:
    """A poll listener that runs ``action`` once, after ``count`` polls (answers or errors)."""
    seen = [0]

    def listener(_event: PollEvent) -> None:
        seen[0] += 1
        if seen[0] == count:
            action()

    return listener


async def test_expected_count_ends_the_lookup(dns: DnsServer) -> None:
    """Three published pods and an expected count of 3: done on the first poll, sorted."""
    dns.set_records(SERVICE, a=["10.0.0.10", "10.0.0.9", "10.0.0.11"])
    result = await discover_peers(settings_for(dns, expected_count=3))
    assert result.reason is StopReason.EXPECTED_COUNT
    assert render_flatfile(result.peers) == "10.0.0.9:54321\n10.0.0.10:54321\n10.0.0.11:54321\n"
    assert result.polls == 1


async def test_waits_for_late_pods(dns: DnsServer) -> None:
    """Pods published later are picked up by a later poll."""
    dns.set_records(SERVICE, a=ips(1))
    listener = after_polls(3, lambda: dns.set_records(SERVICE, a=ips(3)))
    result = await discover_peers(settings_for(dns, expected_count=3), on_poll=listener)
    assert result.reason is StopReason.EXPECTED_COUNT
    assert len(result.peers) == 3
    assert result.polls >= 4


async def test_each_poll_is_a_snapshot(dns: DnsServer) -> None:
    """A pod that went away is not in the result: peers are never accumulated across polls."""
    dns.set_records(SERVICE, a=["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    gone = after_polls(2, lambda: dns.set_records(SERVICE, a=["10.0.0.1", "10.0.0.3"]))
    result = await discover_peers(settings_for(dns, expected_count=2), on_poll=gone)
    assert [str(p.ip) for p in result.peers] == ["10.0.0.1", "10.0.0.3"]


async def test_timeout_returns_the_last_snapshot(dns: DnsServer) -> None:
    """At the timeout the lookup ends with what the last poll saw, and says why."""
    dns.set_records(SERVICE, a=ips(2))
    result = await discover_peers(settings_for(dns, expected_count=3, timeout=0.5))
    assert result.reason is StopReason.TIMEOUT
    assert len(result.peers) == 2
    assert "timed out" in result.describe()


async def test_silent_server_ends_within_one_interval(dns: DnsServer) -> None:
    """A server that never answers cannot hold the lookup past its timeout plus one interval."""
    dns.fault = Fault.DROP
    settings = settings_for(dns, expected_count=3, timeout=1.5, query_timeout=3.0)
    started = time.monotonic()
    result = await discover_peers(settings)
    took = time.monotonic() - started
    assert result.reason is StopReason.TIMEOUT
    assert result.peers == ()
    assert took <= 1.5 + settings.poll_interval + 0.1
    assert result.last_error is not None
    assert result.last_error.startswith("timeout")


async def test_nxdomain_is_no_peers_yet(dns: DnsServer) -> None:
    """An unknown name is an empty snapshot, not an error."""
    result = await discover_peers(settings_for(dns), once=True)
    assert result.peers == ()
    assert result.errors == 0
    assert result.reason is StopReason.SINGLE_POLL


async def test_servfail_is_retried_with_backoff(dns: DnsServer) -> None:
    """SERVFAIL is retried with growing, capped waits; after recovery polls are fast again."""
    dns.set_records(SERVICE, a=ips(1))
    dns.fault = Fault.SERVFAIL
    events: list[PollEvent] = []

    def listener(event: PollEvent) -> None:
        events.append(event)
        if len(events) == 6:
            dns.fault = Fault.OK
        if len(events) == 9:
            dns.set_records(SERVICE, a=ips(3))

    result = await discover_peers(settings_for(dns, expected_count=3), on_poll=listener)
    assert result.reason is StopReason.EXPECTED_COUNT
    assert result.errors == 6
    assert result.last_error is not None
    assert result.last_error.startswith("servfail")
    gaps = [later.elapsed - earlier.elapsed for earlier, later in itertools.pairwise(events)]
    backoff = gaps[:5]
    assert backoff[2] > backoff[0]
    assert max(backoff) <= 0.4 + 0.05
    assert max(gaps[6:]) < 0.2  # back to the 0.05 s interval


async def test_each_condition_logged_once(dns: DnsServer, caplog: pytest.LogCaptureFixture) -> None:
    """Ten failing polls in a row give one warning, not ten."""
    dns.fault = Fault.SERVFAIL
    recover = after_polls(10, lambda: setattr(dns, "fault", Fault.OK))
    dns.set_records(SERVICE, a=ips(1))
    with caplog.at_level(logging.INFO, logger="h2o_k8s_discovery"):
        await discover_peers(settings_for(dns, expected_count=1, backoff_max=0.05), on_poll=recover)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "servfail" in warnings[0].getMessage()


async def test_unreachable_server_is_an_error() -> None:
    """Nothing listening on the nameserver's port: errors until the timeout, no peers."""
    settings = settings_for(("127.0.0.1", free_port()), timeout=0.5)
    result = await discover_peers(settings)
    assert result.reason is StopReason.TIMEOUT
    assert result.errors >= 1
    assert result.peers == ()


async def test_thousand_peers_over_tcp(dns: DnsServer) -> None:
    """1000 A records do not fit in UDP: the TCP fallback returns every one of them."""
    dns.set_records(SERVICE, a=ips(1000))
    result = await discover_peers(settings_for(dns, expected_count=1000))
    assert result.reason is StopReason.EXPECTED_COUNT
    assert {str(p.ip) for p in result.peers} == set(ips(1000))
    assert dns.stats.tcp > 0


async def test_srv_records_carry_ports(dns: DnsServer) -> None:
    """In SRV mode each record's port is used and its target resolved to an address."""
    for i in range(3):
        dns.set_records(f"pod-{i}.{SERVICE}", a=["127.0.0.1"])
    dns.set_records(SERVICE, srv=[(0, 0, 54321 + 2 * i, f"pod-{i}.{SERVICE}") for i in range(3)])
    result = await discover_peers(settings_for(dns, expected_count=3, record_type=RecordType.SRV))
    assert [str(p) for p in result.peers] == [
        "127.0.0.1:54321",
        "127.0.0.1:54323",
        "127.0.0.1:54325",
    ]


async def test_srv_target_without_address_is_skipped(dns: DnsServer) -> None:
    """An SRV target with no address record contributes no peer and no error."""
    dns.set_records(f"pod-0.{SERVICE}", a=["10.0.0.1"])
    dns.set_records(
        SERVICE, srv=[(0, 0, 54321, f"pod-0.{SERVICE}"), (0, 0, 54321, f"gone.{SERVICE}")]
    )
    result = await discover_peers(settings_for(dns, record_type=RecordType.SRV), once=True)
    assert result.peers == (Peer.parse("10.0.0.1", 54321),)
    assert result.errors == 0


async def test_unusable_addresses_are_dropped(dns: DnsServer) -> None:
    """0.0.0.0 or a multicast address in an answer is never written to the flatfile."""
    dns.set_records(SERVICE, a=["0.0.0.0", "224.0.0.1", "10.0.0.1"])
    result = await discover_peers(settings_for(dns), once=True)
    assert [str(p.ip) for p in result.peers] == ["10.0.0.1"]


async def test_garbage_answers_are_errors(dns: DnsServer) -> None:
    """Bytes that are not a DNS answer count as an error and end in a timeout, not a crash."""
    dns.set_records(SERVICE, a=ips(1))
    dns.fault = Fault.GARBAGE
    result = await discover_peers(settings_for(dns, expected_count=1, timeout=0.6))
    assert result.reason is StopReason.TIMEOUT
    assert result.errors >= 1


async def test_truncated_with_tcp_refused_is_an_error(dns: DnsServer) -> None:
    """When the answer needs TCP and TCP is closed, the poll fails; no partial snapshot."""
    dns.set_records(SERVICE, a=ips(300))
    dns.tcp_enabled = False
    result = await discover_peers(settings_for(dns, expected_count=300, timeout=0.6))
    assert result.reason is StopReason.TIMEOUT
    assert result.peers == ()
    assert result.errors >= 1


@requires_dnsmasq
async def test_dnsmasq_six_hundred_records(tmp_path: Path) -> None:
    """A real dnsmasq's 600 A records arrive whole through the TCP fallback."""
    with running_dnsmasq({SERVICE: ips(600)}, tmp_path) as (host, port):
        result = await discover_peers(settings_for((host, port), expected_count=600))
    assert result.reason is StopReason.EXPECTED_COUNT
    assert {str(p.ip) for p in result.peers} == set(ips(600))


async def test_stable_period_waits_out_flapping(dns: DnsServer) -> None:
    """A set that flaps does not end the lookup until it has held for the stable period."""
    dns.set_records(SERVICE, a=ips(3))
    events: list[PollEvent] = []

    def flap(event: PollEvent) -> None:
        events.append(event)
        if len(events) <= 6:  # alternate between 4 and 3 records, ending on 3
            dns.set_records(SERVICE, a=ips(4 if len(events) % 2 else 3))

    settings = settings_for(dns, expected_count=3, stable_period=0.3)
    result = await discover_peers(settings, on_poll=flap)
    assert result.reason is StopReason.EXPECTED_COUNT
    last_change = events[6].elapsed  # the first poll that saw the final set
    assert result.elapsed - last_change >= 0.3 - settings.poll_interval
    assert result.polls >= 9


async def test_more_than_expected_names_the_peers(
    dns: DnsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """More peers than expected keep the lookup waiting and the log lists what is published."""
    dns.set_records(SERVICE, a=ips(4))
    with caplog.at_level(logging.WARNING, logger="h2o_k8s_discovery"):
        result = await discover_peers(settings_for(dns, expected_count=3, timeout=0.4))
    assert result.reason is StopReason.TIMEOUT
    (warning,) = [r.getMessage() for r in caplog.records if "more than" in r.getMessage()]
    assert "1 more than the 3 expected" in warning
    assert all(ip in warning for ip in ips(4))
