"""The flatfile as a named pipe, for a JVM started before its peers are known.

With ``H2O_JVM_EARLY_START`` the JVM is given a named pipe as its flatfile: H2O boots until it
opens the flatfile, then waits in ``open`` until the peers are written. The content is written
in full and only then is the pipe closed, so H2O, which reads to end of file, sees all of it or,
if this process died first, nothing it could start with.

Kept apart from ``flatfile``: this needs asyncio, which the commands that only render or write a
flatfile must not import before ``footprint.keep_openssl_out`` has run.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from h2o_k8s_discovery.errors import FlatfileError
from h2o_k8s_discovery.flatfile.format import render_flatfile
from h2o_k8s_discovery.peers import Peer


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
