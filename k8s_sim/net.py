"""Free loopback ports for tests that start servers (another process may still take one)."""

from __future__ import annotations

import contextlib
import socket

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port free right now for TCP on every address and for UDP on ``host``.

    The kernel picks it for TCP on the wildcard address, as the probe server binds, so no
    listener or connection anywhere holds it; UDP is checked too for the DNS servers.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("0.0.0.0", 0))  # only to ask the kernel for a free port
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise AssertionError("no port free for both TCP and UDP found")


def free_port_pair(host: str = LOOPBACK) -> int:
    """A TCP port P on ``host`` with P + 1 free too (H2O binds both), in a bounded search."""
    return free_port_run(2, host)


def free_port_run(count: int, host: str = LOOPBACK) -> int:
    """A TCP port P on ``host`` with P + 1 ... P + count - 1 free too, in a bounded search."""
    for _ in range(200):
        with contextlib.ExitStack() as held:
            first = held.enter_context(socket.socket())
            first.bind((host, 0))
            port = int(first.getsockname()[1])
            if port + count > 65536:
                continue
            try:
                for offset in range(1, count):
                    held.enter_context(socket.socket()).bind((host, port + offset))
            except OSError:
                continue
            return port
    raise AssertionError(f"no {count} neighbouring free ports found")
