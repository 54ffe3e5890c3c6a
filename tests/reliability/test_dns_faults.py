"""The cluster DNS at its worst, against the lookup API and the ``discover`` command.

Every fault is produced by a real server on loopback speaking the DNS wire protocol
(``DnsServer`` and its ``Fault`` modes) or by a port where nothing listens; the resolver is the
unmodified dnspython one the entrypoint uses. Durations are shortened from the issue's 10 s to
2-3 s where the behaviour is the same.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from h2o_k8s_discovery import exit_codes
from h2o_k8s_discovery.config.settings import IpFamily, LookupSettings, Nameserver
from h2o_k8s_discovery.discovery.constraints import StopReason
from h2o_k8s_discovery.discovery.lookup import PollEvent, discover_peers
from h2o_k8s_discovery.flatfile.format import render_flatfile
from tests.support.dns_server import DnsServer, Fault, ThreadedDnsServer
from tests.support.paths import PYTHONPATH
from tests.support.reliability import SERVICE, free_port

LOGGER = "h2o_k8s_discovery"


def ips(count: int, prefix: str = "10.42") -> list[str]:
    return [f"{prefix}.{i // 250}.{i % 250 + 1}" for i in range(count)]


def ipv6s(count: int) -> list[str]:
    return [f"fd00::{i + 1:x}" for i in range(count)]


@pytest.fixture
async def dns() -> AsyncIterator[DnsServer]:
    async with DnsServer("127.0.0.1") as server:
        yield server


def lookup(port: int, **changes: object) -> LookupSettings:
    """Fast lookup settings against 127.0.0.1:``port``; ``changes`` override fields."""
    base = LookupSettings(
        service_dns=SERVICE,
        nameserver=Nameserver(ipaddress.ip_address("127.0.0.1"), port),
        expected_count=3,
        timeout=1.0,
        poll_interval=0.05,
        query_timeout=0.5,
        backoff_max=0.2,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


class Polls:
    """A poll listener that records every event and can act after the n-th one."""

    def __init__(self, actions: dict[int, Callable[[], None]] | None = None) -> None:
        self.events: list[PollEvent] = []
        self.actions = actions or {}

    def __call__(self, event: PollEvent) -> None:
        self.events.append(event)
        action = self.actions.get(len(self.events))
        if action is not None:
            action()

    @property
    def snapshots(self) -> list[tuple[str, ...]]:
        return [tuple(map(str, e.peers)) for e in self.events if e.peers is not None]


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def test_server_down_is_retried_until_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing listening: each poll fails fast and is retried; the lookup ends at its timeout."""
    polls = Polls()
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        result = await discover_peers(lookup(free_port(), query_timeout=0.2), on_poll=polls)
    took = time.monotonic() - started
    assert result.reason is StopReason.TIMEOUT
    assert result.peers == ()
    assert result.errors >= 2
    assert all(event.peers is None for event in polls.events)
    assert took < 1.0 + 0.05 + 0.3
    assert result.last_error is not None
    assert result.last_error.startswith(("unreachable", "timeout")), result.last_error
    assert 1 <= len(warnings_in(caplog)) <= 2, "each condition is logged once, not per poll"


async def test_silent_server_cannot_hold_the_lookup(dns: DnsServer) -> None:
    """A server that drops every query: a timeout error, and the lookup ends on time."""
    dns.set_records(SERVICE, a=ips(3))
    dns.fault = Fault.DROP
    started = time.monotonic()
    result = await discover_peers(lookup(dns.port, timeout=1.5, query_timeout=3.0))
    took = time.monotonic() - started
    assert result.reason is StopReason.TIMEOUT
    assert result.peers == ()
    assert took <= 1.5 + 0.05 + 0.2
    assert result.last_error is not None
    assert result.last_error.startswith("timeout")


async def test_slow_answers_within_the_query_timeout(dns: DnsServer) -> None:
    """Answers after 3 s with a 4 s query timeout: the first poll succeeds, no error."""
    dns.set_records(SERVICE, a=ips(3))
    dns.fault, dns.delay = Fault.SLOW, 3.0
    result = await discover_peers(lookup(dns.port, timeout=4.5, query_timeout=4.0))
    assert result.reason is StopReason.EXPECTED_COUNT
    assert result.errors == 0
    assert 3.0 <= result.elapsed < 4.0


async def test_slow_answers_past_the_query_timeout_are_retried(
    dns: DnsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Answers after 3 s with a 1 s query timeout: timeout errors, retried until DNS is fast."""
    dns.set_records(SERVICE, a=ips(3))
    dns.fault, dns.delay = Fault.SLOW, 3.0
    polls = Polls({2: lambda: setattr(dns, "fault", Fault.OK)})
    with caplog.at_level(logging.INFO, logger=LOGGER):
        result = await discover_peers(
            lookup(dns.port, timeout=10.0, query_timeout=1.0), on_poll=polls
        )
    assert result.reason is StopReason.EXPECTED_COUNT
    assert result.errors == 2
    assert [e.error.kind for e in polls.events if e.error is not None] == ["timeout", "timeout"]
    assert len(result.peers) == 3
    assert sum("timeout" in w for w in warnings_in(caplog)) == 1


async def test_servfail_for_a_while_then_fine(
    dns: DnsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """SERVFAIL for 3 s: retried with capped backoff, and the peers are found soon after."""
    dns.set_records(SERVICE, a=ips(3))
    dns.fault = Fault.SERVFAIL
    cap = 0.5
    healed_at: list[float] = []

    def heal() -> None:
        dns.fault = Fault.OK
        healed_at.append(time.monotonic())

    asyncio.get_running_loop().call_later(3.0, heal)  # the fault's duration, not a wait
    polls = Polls()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        result = await discover_peers(
            lookup(dns.port, timeout=None, poll_interval=0.1, backoff_max=cap), on_poll=polls
        )
    found_at = time.monotonic()
    assert result.reason is StopReason.EXPECTED_COUNT
    assert len(result.peers) == 3
    assert result.errors >= 6
    assert found_at - healed_at[0] <= cap + 0.3, "found within one capped backoff of recovery"
    errors = [e for e in polls.events if e.error is not None]
    gaps = [b.elapsed - a.elapsed for a, b in itertools.pairwise(errors)]
    assert max(gaps) <= cap + 0.15, f"backoff not capped: {gaps}"
    assert max(gaps) >= cap * 0.8, f"backoff never grew to the cap: {gaps}"
    assert gaps[0] < gaps[3], f"backoff did not grow: {gaps}"
    assert sum("servfail" in w for w in warnings_in(caplog)) == 1


async def test_nxdomain_for_a_while_then_fine(
    dns: DnsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """NXDOMAIN for 2 s is "no pods yet", not an error: polled steadily, found at once after."""
    published_at: list[float] = []

    def publish() -> None:
        dns.set_records(SERVICE, a=ips(3))
        published_at.append(time.monotonic())

    asyncio.get_running_loop().call_later(2.0, publish)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        result = await discover_peers(lookup(dns.port, timeout=None, poll_interval=0.1))
    found_at = time.monotonic()
    assert result.reason is StopReason.EXPECTED_COUNT
    assert result.errors == 0
    assert result.polls >= 15
    assert found_at - published_at[0] <= 0.1 + 0.3, "found on the next poll"
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert sum("no peers published" in m for m in infos) == 1
    assert warnings_in(caplog) == []


@pytest.mark.parametrize(
    ("records", "fault"),
    [(3, Fault.TRUNCATE_ALWAYS), (300, Fault.OK)],
    ids=["tc-always", "300-records"],
)
async def test_truncated_udp_with_tcp_refused(dns: DnsServer, records: int, fault: Fault) -> None:
    """An answer that needs TCP while TCP is refused is an error, never a partial snapshot."""
    dns.set_records(SERVICE, a=ips(records))
    dns.fault = fault
    dns.tcp_enabled = False
    polls = Polls()
    result = await discover_peers(lookup(dns.port, expected_count=records), on_poll=polls)
    assert result.reason is StopReason.TIMEOUT
    assert result.peers == ()
    assert result.errors >= 1
    assert polls.snapshots == [], "no poll may return part of the answer"
    assert dns.stats.tcp_connections >= 1


async def test_truncated_udp_with_tcp_refused_says_tcp(dns: DnsServer) -> None:
    """The error for a truncated answer whose TCP retry is refused says that TCP failed."""
    dns.set_records(SERVICE, a=ips(3))
    dns.fault = Fault.TRUNCATE_ALWAYS
    dns.tcp_enabled = False
    polls = Polls()
    await discover_peers(lookup(dns.port), once=True, on_poll=polls)
    # The last query may be cut short by the deadline (a timeout): look at every error.
    errors = [str(event.error) for event in polls.events if event.error is not None]
    told = [error for error in errors if not error.startswith("timeout")]
    assert told, errors
    assert all("TCP" in error for error in told), told


@pytest.mark.parametrize("fault", [Fault.GARBAGE, Fault.WRONG_ID, Fault.REFUSED])
async def test_bad_answers_are_errors(dns: DnsServer, fault: Fault) -> None:
    """Garbage bytes, an answer under another id, REFUSED: errors, retried, never used."""
    dns.set_records(SERVICE, a=ips(3))
    dns.fault = fault
    polls = Polls()
    result = await discover_peers(lookup(dns.port), on_poll=polls)
    assert result.reason is StopReason.TIMEOUT
    assert result.peers == ()
    assert result.errors >= 1
    assert polls.snapshots == []
    dns.fault = Fault.OK  # the same server, healed, gives the peers: the fault was the cause
    healed = await discover_peers(lookup(dns.port))
    assert healed.reason is StopReason.EXPECTED_COUNT


async def test_records_flapping_every_poll(dns: DnsServer) -> None:
    """Records changing on every poll: each poll is that moment's set, and only 3 ends it."""
    sets = [ips(2), ips(4, "10.43"), ips(2, "10.44"), ips(4, "10.45"), ips(3, "10.46")]
    dns.set_records(SERVICE, a=sets[0])
    published = [tuple(sets[0])]

    def flap(number: int) -> Callable[[], None]:
        def publish() -> None:
            dns.set_records(SERVICE, a=sets[number])
            published.append(tuple(sets[number]))

        return publish

    polls = Polls({n: flap(n) for n in range(1, len(sets))})
    result = await discover_peers(lookup(dns.port, timeout=5.0), on_poll=polls)
    assert result.reason is StopReason.EXPECTED_COUNT
    assert [tuple(ip.split(":")[0] for ip in snap) for snap in polls.snapshots] == published
    assert [str(peer.ip) for peer in result.peers] == sets[-1], "the last set, not a union"


async def test_records_flapping_never_settle(dns: DnsServer) -> None:
    """Flapping between 2 and 4 pods never matches 3: the lookup times out on the last set."""
    sizes = itertools.cycle([4, 2])
    dns.set_records(SERVICE, a=ips(2))
    last: list[list[str]] = [ips(2)]

    def flap(_event: PollEvent) -> None:
        last[0] = ips(next(sizes), "10.47")
        dns.set_records(SERVICE, a=last[0])

    result = await discover_peers(lookup(dns.port), on_poll=flap)
    assert result.reason is StopReason.TIMEOUT
    assert len(result.peers) in (2, 4)
    assert result.polls > 5


async def test_aaaa_only(dns: DnsServer) -> None:
    """A Service with only AAAA records gives IPv6 peers, bracketed in the flatfile."""
    dns.set_records(SERVICE, aaaa=ipv6s(3))
    result = await discover_peers(lookup(dns.port, ip_family=IpFamily.IPV6))
    assert result.reason is StopReason.EXPECTED_COUNT
    assert render_flatfile(result.peers) == "".join(f"[{ip}]:54321\n" for ip in ipv6s(3))


async def test_cname_chain(dns: DnsServer) -> None:
    """The Service name behind a chain of two CNAMEs resolves to the final name's records."""
    dns.set_records(SERVICE, cname=f"alias-1.{SERVICE}")
    dns.set_records(f"alias-1.{SERVICE}", cname=f"alias-2.{SERVICE}")
    dns.set_records(f"alias-2.{SERVICE}", a=ips(3))
    result = await discover_peers(lookup(dns.port))
    assert result.reason is StopReason.EXPECTED_COUNT
    assert [str(p.ip) for p in result.peers] == ips(3)


async def test_cname_loop_is_an_error(dns: DnsServer) -> None:
    """A CNAME loop (the server gives SERVFAIL) is an error, retried, never a crash."""
    dns.set_records(SERVICE, cname=f"alias.{SERVICE}")
    dns.set_records(f"alias.{SERVICE}", cname=SERVICE)
    polls = Polls()
    result = await discover_peers(lookup(dns.port), on_poll=polls)
    assert result.reason is StopReason.TIMEOUT
    assert result.peers == ()
    kinds = [event.error.kind for event in polls.events if event.error is not None]
    assert kinds.count("servfail") >= 2, kinds


async def test_dangling_cname_is_no_pods_yet(dns: DnsServer) -> None:
    """A CNAME to a name that does not exist is NXDOMAIN: no peers yet, not an error."""
    dns.set_records(SERVICE, cname=f"nowhere.{SERVICE}")
    result = await discover_peers(lookup(dns.port), once=True)
    assert result.peers == ()
    assert result.errors == 0


@pytest.mark.parametrize(
    ("a", "aaaa", "family"),
    [(4000, 0, IpFamily.IPV4), (1500, 2000, IpFamily.IPV6)],
    ids=["4000-A", "2000-AAAA-beside-1500-A"],
)
async def test_thousands_of_records_over_tcp(
    dns: DnsServer, a: int, aaaa: int, family: IpFamily
) -> None:
    """Thousands of records of the chosen family arrive whole over TCP, within seconds."""
    dns.set_records(SERVICE, a=ips(a), aaaa=ipv6s(aaaa))
    expected = a if family is IpFamily.IPV4 else aaaa
    result = await discover_peers(
        lookup(dns.port, expected_count=expected, timeout=20.0, ip_family=family)
    )
    assert result.reason is StopReason.EXPECTED_COUNT
    assert len(result.peers) == expected
    assert {peer.ip.version for peer in result.peers} == {4 if family is IpFamily.IPV4 else 6}
    # 0.7-0.8 s measured on an idle machine; a loaded one may need a retry within the timeout.
    assert result.elapsed < 20.0
    assert dns.stats.tcp >= 1


async def test_5000_a_records_exceed_one_dns_message() -> None:
    """5000 A records (80 KB) cannot fit one 64 KiB TCP message: an error, never 4000 of them."""
    polls = Polls()
    started = time.monotonic()
    # On its own thread: rendering 5000 records must not stall the lookup's own event loop.
    with ThreadedDnsServer("127.0.0.1") as dns:
        dns.set_records(SERVICE, a=ips(5000))
        result = await discover_peers(
            lookup(dns.port, expected_count=5000, timeout=2.0, query_timeout=2.0), on_poll=polls
        )
    assert time.monotonic() - started < 3.0
    assert result.reason is StopReason.TIMEOUT
    assert result.peers == ()
    assert polls.snapshots == []
    kinds = {e.error.kind for e in polls.events if e.error is not None}
    assert "truncated" in kinds


async def test_dns_server_stops_quietly_with_a_tcp_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stopping the embedded DNS server while a TCP client is connected logs no error."""
    server = DnsServer("127.0.0.1")
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        with caplog.at_level(logging.ERROR):
            await server.stop()
            await asyncio.sleep(0)  # let the loop run the callbacks of the stopped tasks
    finally:
        writer.close()
    assert await reader.read() == b""
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- the same faults through the ``discover`` command ----------------------------------------

CLI_FAULTS = ["down", "drop", "servfail", "refused", "garbage", "wrong-id", "truncated-no-tcp"]


@pytest.mark.parametrize("fault", CLI_FAULTS)
def test_discover_command_under_dns_faults(fault: str, tmp_path: Path) -> None:
    """``discover --write``: one warning, exit 69 (fail closed), nothing written, no traceback."""
    target = tmp_path / "out" / "flatfile"
    with ThreadedDnsServer("127.0.0.1") as server:
        server.set_records(SERVICE, a=["10.0.0.1"])
        port = server.port
        if fault == "down":
            port = free_port()
        elif fault == "truncated-no-tcp":
            server.fault, server.tcp_enabled = Fault.TRUNCATE_ALWAYS, False
        else:
            server.fault = Fault(fault.replace("-", "_"))
        env = {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": PYTHONPATH,
            "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
            "H2O_DNS_NAMESERVER": f"127.0.0.1:{port}",
            "H2O_NODE_EXPECTED_COUNT": "1",
            "H2O_NODE_LOOKUP_TIMEOUT": "1",
            "H2O_DNS_POLL_INTERVAL": "0.1",
            "H2O_DNS_QUERY_TIMEOUT": "0.3",
        }
        done = subprocess.run(
            [sys.executable, "-m", "h2o_k8s_discovery", "discover", "--write", str(target)],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == exit_codes.LOOKUP_FAILED, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert not target.parent.exists()
    warnings = [line for line in done.stderr.splitlines() if "DNS error" in line]
    assert 1 <= len(warnings) <= 2, done.stderr
    assert "the lookup timed out" in done.stderr
