"""Members as H2O names them, read back as addresses: every form H2O writes, and bad input."""

from __future__ import annotations

import contextlib
import ipaddress
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h2o_k8s_discovery.peers import IPAddress, Peer, parse_member

JAVA_SOURCE = Path(__file__).parent / "support" / "children" / "HostAddress.java"


def java_host_address(ip: IPAddress) -> str:
    """What Java's ``InetAddress.getHostAddress()`` writes: IPv6 as eight hex groups, no ``::``.

    Java turns an IPv4-mapped address into an ``Inet4Address``, so it is written as IPv4.
    """
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    groups = [(int(ip) >> (16 * (7 - i))) & 0xFFFF for i in range(8)]
    return ":".join(f"{group:x}" for group in groups)


def as_java_sees(ip: IPAddress) -> IPAddress:
    """The address Java ends up with (IPv4 for an IPv4-mapped IPv6 address)."""
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


ports = st.integers(min_value=1, max_value=65535)
names = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,30}[a-z0-9])?", fullmatch=True)


@given(st.ip_addresses(), ports)
def test_cloud_form_round_trip(ip: IPAddress, port: int) -> None:
    """/3/Cloud's ``ip_port`` (Java's text, IPv6 uncompressed, no brackets) reads back exactly."""
    assert parse_member(f"{java_host_address(ip)}:{port}") == Peer(as_java_sees(ip), port)


@given(st.ip_addresses(), ports, st.one_of(st.just(""), names))
def test_log_form_round_trip(ip: IPAddress, port: int, name: str) -> None:
    """The log's ``name/address:port`` and ``/address:port`` read back as the same peer."""
    text = f"{name}/{java_host_address(ip)}:{port}"
    assert parse_member(text) == Peer(as_java_sees(ip), port)


@given(st.ip_addresses(), ports)
def test_own_form_round_trip(ip: IPAddress, port: int) -> None:
    """This package's own ``[ip]:port`` / ``ip:port`` (flatfile, /status) reads back exactly."""
    peer = Peer(ip, port)
    assert parse_member(str(peer)) == peer


def test_ipv6_forms_are_one_peer() -> None:
    """H2O's IPv6 forms and the flatfile's are the same address, so they compare equal."""
    forms = [
        "fd00:0:0:0:0:0:0:a:54321",
        "/fd00:0:0:0:0:0:0:a:54321",
        "h2o-0.h2o.svc.cluster.local/fd00:0:0:0:0:0:0:a:54321",
        "[fd00::a]:54321",
        "[fd00:0:0:0:0:0:0:a]:54321",
        " fd00:0:0:0:0:0:0:a:54321\n",
    ]
    assert {parse_member(form) for form in forms} == {Peer.parse("fd00::a", 54321)}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no port"),
        ("10.0.0.1", "no port"),
        ("10.0.0.1:", "port '' is not 1-65535"),
        ("10.0.0.1:0", "port '0' is not 1-65535"),
        ("10.0.0.1:65536", "port '65536' is not 1-65535"),
        ("10.0.0.1:\u0665", "is not 1-65535"),
        ("fd00::a:8080", "must have all eight groups"),
        ("fd00:0:0:0:0:0:a:54321", "must have all eight groups"),
        ("[fd00::a]", "expected [address]:port"),
        ("[fd00::a:54321", "expected [address]:port"),
        ("a/b/10.0.0.1:54321", "more than one '/'"),
        ("h2o-0:54321", "does not appear to be an IPv4 or IPv6 address"),
        ("fe80:0:0:0:0:0:0:1%eth0:54321", "zone index"),
        ("999.0.0.1:54321", "does not appear to be an IPv4 or IPv6 address"),
    ],
)
def test_unreadable_members_are_clear_errors(text: str, problem: str) -> None:
    """Anything else is a ValueError quoting the text and saying what is wrong."""
    with pytest.raises(ValueError, match="is not a member address") as raised:
        parse_member(text)
    assert repr(text) in str(raised.value)
    assert problem in str(raised.value)


@given(st.text(max_size=60))
def test_any_text_is_a_peer_or_a_value_error(text: str) -> None:
    """No input makes the parser raise anything but ValueError."""
    with contextlib.suppress(ValueError):
        parse_member(text)


@pytest.mark.skipif(shutil.which("java") is None, reason="needs java (the JDK H2O runs on)")
def test_model_matches_real_java() -> None:
    """Real Java writes 300 random addresses (and edge cases) as the model says; all read back."""
    rng = random.Random(14)
    edge = ["::", "::1", "1::", "fd00::a", "::ffff:10.0.0.1", "::10.0.0.1", "2001:2:0:1::11"]
    ips: list[IPAddress] = [ipaddress.ip_address(text) for text in edge]
    ips += [ipaddress.IPv6Address(rng.getrandbits(128)) for _ in range(200)]
    # Sparse addresses, where compressing would make a difference.
    ips += [
        ipaddress.IPv6Address(rng.getrandbits(16) << (16 * rng.randrange(8))) for _ in range(50)
    ]
    ips += [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(50)]
    result = subprocess.run(
        ["java", str(JAVA_SOURCE)],
        input="".join(f"{ip}\n" for ip in ips),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert len(lines) == len(ips)
    for ip, line in zip(ips, lines, strict=True):
        cloud_form, log_form = line.split("\t")
        assert cloud_form == f"{java_host_address(ip)}:54321"
        expected = Peer(as_java_sees(ip), 54321)
        assert parse_member(cloud_form) == expected
        assert parse_member(log_form) == expected
