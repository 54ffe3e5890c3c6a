"""The H2O flatfile: one ``ip:port`` line per peer.

Rendering is pure and canonical (sorted, de-duplicated, final newline) so two pods that saw the
same peers write byte-identical files. Writing is atomic: H2O reads the file once at start, and
a reader must never see half of it.

A JVM started before its peers are known (``H2O_JVM_EARLY_START``) is given a named pipe as its
flatfile instead: H2O boots until it opens the flatfile, then waits in ``open`` until the peers
are written. The content is written in full and only then is the pipe closed, so H2O, which reads
to end of file, sees all of it or, if this process died, nothing it could start with.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterable
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


def make_flatfile_pipe(path: Path) -> None:
    """A named pipe at ``path`` (replacing whatever was there) for a JVM to wait on."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.mkfifo(path, 0o644)
    except OSError as err:
        raise FlatfileError(
            f"cannot create the flatfile pipe {path}: {err.strerror or err}"
        ) from err


async def feed_flatfile_pipe(
    path: Path, peers: Iterable[Peer], *, reader_alive: Callable[[], bool], poll: float = 0.02
) -> bool:
    """Write the flatfile into the pipe at ``path`` once a reader has opened it, then close it.

    Returns False, having written nothing whole, when ``reader_alive()`` turns false (the JVM
    died) before the reader opened the pipe or took all of it.
    """
    content = memoryview(render_flatfile(peers).encode("ascii"))
    fd = await _open_once_read(path, reader_alive, poll)
    if fd is None:
        return False
    try:
        while content:
            try:
                content = content[os.write(fd, content) :]
            except BlockingIOError:  # the pipe is full until H2O reads on
                if not reader_alive():
                    return False
                await asyncio.sleep(poll)
    except BrokenPipeError:
        return False
    finally:
        os.close(fd)
    return True


async def _open_once_read(path: Path, reader_alive: Callable[[], bool], poll: float) -> int | None:
    # A non-blocking open for writing fails with ENXIO until a reader has the pipe open; a
    # blocking one would stall the event loop, and with it the probes and the signals.
    while reader_alive():
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno != errno.ENXIO:
                raise FlatfileError(
                    f"cannot open the flatfile pipe {path}: {err.strerror}"
                ) from err
        await asyncio.sleep(poll)
    return None


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
