"""A real dnsmasq on loopback serving given name -> addresses: a third-party server for tests.

dnsmasq is the second opinion on our own ``DnsServer``: a widely deployed implementation whose
truncation and TCP behaviour we do not control. Facts this helper relies on (dnsmasq 2.90):

- ``--addn-hosts`` entries are answered authoritatively, all of them: 600 addresses for one name
  come back whole over TCP (up to 4094 A records, the 64 KiB message limit, beyond which even the
  TCP answer has TC set). ``--cache-size`` does not cap hosts-file entries.
- Over UDP a too-large answer carries TC *and* as many records as fit (unlike ``DnsServer``,
  which sends none). The UDP size is capped at ``--edns-packet-max`` (default 1232) whatever
  the client offers.
- Hosts-file records have TTL 0 unless ``--local-ttl`` is given; 5 mirrors CoreDNS.
- ``--conf-file=/dev/null`` keeps /etc/dnsmasq.conf out; ``--user`` set to the current user
  stops root from dropping to ``nobody`` (who could not read pytest's 0700 tmp_path).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import pytest

from k8s_sim.net import free_port

DNSMASQ = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
SKIP_REASON = "dnsmasq not installed; .ci/run installs dnsmasq-base"
requires_dnsmasq = pytest.mark.skipif(DNSMASQ is None, reason=SKIP_REASON)

HOST = "127.0.0.1"
START_DEADLINE = 10.0
STOP_DEADLINE = 5.0
BIND_ATTEMPTS = 3
POLL_INTERVAL = 0.02
EXIT_BIND_FAILED = 2  # dnsmasq's status for "failed to create listening socket"


def write_hosts(records: Mapping[str, Sequence[str]], path: Path) -> Path:
    """An addn-hosts file: one ``address name`` line per address."""
    lines = [f"{ip} {name.rstrip('.')}" for name, ips in records.items() for ip in ips]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def dnsmasq_command(binary: str, hosts: Path, port: int) -> list[str]:
    return [
        binary,
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        f"--addn-hosts={hosts}",
        f"--listen-address={HOST}",
        "--bind-interfaces",
        f"--port={port}",
        "--pid-file=",
        f"--user={pwd.getpwuid(os.getuid()).pw_name}",
        "--local-ttl=5",
        "--log-facility=-",
    ]


def answers(port: int, probe: str, timeout: float = 0.2) -> bool:
    """Whether a server on ``HOST``:``port`` answers an A query for ``probe`` over UDP."""
    query = dns.message.make_query(probe, "A")
    try:
        dns.query.udp(query, HOST, port=port, timeout=timeout)
    except (dns.exception.DNSException, OSError):
        return False
    return True


def wait_ready(process: subprocess.Popen[bytes], port: int, probe: str) -> bool:
    """Poll until dnsmasq answers (True) or exits (False); raise after ``START_DEADLINE``."""
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if answers(port, probe):
            return True
        time.sleep(POLL_INTERVAL)  # a closed UDP port fails at once: do not spin
    raise TimeoutError(f"dnsmasq on port {port} did not answer within {START_DEADLINE} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running_dnsmasq(
    records: Mapping[str, Sequence[str]], tmp_path: Path
) -> Iterator[tuple[str, int]]:
    """Run dnsmasq serving ``records`` (name -> addresses); yields its ``(host, port)``."""
    if DNSMASQ is None:
        pytest.skip(SKIP_REASON)
    if not records:
        raise ValueError("records is empty: give at least one name to probe readiness with")
    hosts = write_hosts(records, tmp_path / "dnsmasq.hosts")
    log = tmp_path / "dnsmasq.log"
    probe = next(iter(records))
    for _ in range(BIND_ATTEMPTS):
        port = free_port()
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                dnsmasq_command(DNSMASQ, hosts, port),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        try:
            if wait_ready(process, port, probe):
                yield HOST, port
                return
        finally:
            stop(process)
        if process.returncode != EXIT_BIND_FAILED:
            break  # only a lost race for the port is worth another try
    output = log.read_text(encoding="utf-8", errors="replace")
    raise RuntimeError(f"dnsmasq exited with status {process.returncode}: {output}")
