"""Fixtures of the reliability suite: a DNS server publishing the Service, and pods to start."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.dns_server import DnsServer, ThreadedDnsServer
from tests.support.reliability import SERVICE, Pod, PodFactory

Launch = Callable[..., Pod]


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    """A wire-protocol DNS server on loopback publishing the Service with one pod, 127.0.0.1."""
    with ThreadedDnsServer("127.0.0.1") as server:
        server.set_records(SERVICE, a=["127.0.0.1"])
        yield server


@pytest.fixture
def launch(dns: DnsServer, tmp_path: Path) -> Iterator[Launch]:
    """Start ``run`` entrypoints with the stand-in java; everything they started dies after."""
    factory = PodFactory(dns, tmp_path)
    yield factory.start
    factory.close()
