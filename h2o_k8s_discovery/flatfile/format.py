"""The H2O flatfile: one ``ip:port`` line per peer.

Rendering is pure and canonical (sorted, de-duplicated, final newline) so two pods that saw the
same peers write byte-identical files. Writing is atomic: H2O reads the file once at start, and
a reader must never see half of it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from h2o_k8s_discovery.errors import FlatfileError
from h2o_k8s_discovery.peers import Peer, snapshot


def render_flatfile(peers: Iterable[Peer]) -> str:
    """One ``ip:port`` line per peer (``[ip]:port`` for IPv6), sorted, with a final newline."""
    return "".join(f"{peer}\n" for peer in snapshot(tuple(peers)))


def parse_flatfile(text: str) -> tuple[Peer, ...]:
    """Read back a flatfile in H2O's syntax; raises ``ValueError`` naming the bad line.

    Blank lines and ``#`` comments are skipped. Unlike H2O, a line without a port is an error:
    H2O would silently reuse the previous line's port.
    """
    peers = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        host, sep, port = stripped.rpartition(":")
        if not sep or not port.isdecimal():
            raise ValueError(f"line {number}: {line!r} is not ip:port")
        try:
            peers.append(Peer.parse(host.removeprefix("[").removesuffix("]"), int(port)))
        except ValueError as err:
            raise ValueError(f"line {number}: {line!r}: {err}") from None
    return snapshot(peers)


def write_flatfile(path: Path, peers: Iterable[Peer]) -> None:
    """Write the flatfile atomically: a temp file beside it, fsync, rename, fsync the directory."""
    content = render_flatfile(peers).encode("ascii")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _replace_atomically(path, content)
    except OSError as err:
        raise FlatfileError(f"cannot write the flatfile {path}: {err.strerror or err}") from err


def _replace_atomically(path: Path, content: bytes) -> None:
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as temp:
            temp.write(content)
            temp.flush()
            os.fsync(temp.fileno())
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # The rename is only durable once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
