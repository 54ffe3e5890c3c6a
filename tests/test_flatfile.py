"""The flatfile: H2O's syntax, canonical order, atomic writes."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h2o_k8s_discovery.errors import FlatfileError
from h2o_k8s_discovery.flatfile.format import parse_flatfile, render_flatfile, write_flatfile
from h2o_k8s_discovery.flatfile.pipe import feed_flatfile_pipe, make_flatfile_pipe
from h2o_k8s_discovery.peers import Peer

PEER = Peer.parse("10.0.0.1", 54321)

peers_strategy = st.lists(
    st.builds(
        Peer,
        st.ip_addresses(),
        st.integers(min_value=1, max_value=65534),
    ),
    max_size=30,
)


def test_render_lines() -> None:
    """One ip:port line per peer, IPv6 in brackets, numeric order, a final newline."""
    peers = [
        Peer.parse("10.0.0.10", 54321),
        Peer.parse("fd00::1", 54321),
        Peer.parse("10.0.0.9", 54321),
        Peer.parse("10.0.0.9", 54321),
    ]
    assert render_flatfile(peers) == "10.0.0.9:54321\n10.0.0.10:54321\n[fd00::1]:54321\n"


def test_render_nothing() -> None:
    """No peers give an empty file, not a lone newline."""
    assert render_flatfile([]) == ""


@given(peers_strategy)
def test_round_trip(peers: list[Peer]) -> None:
    """Parsing a rendered flatfile gives back the sorted, de-duplicated peers."""
    assert parse_flatfile(render_flatfile(peers)) == tuple(sorted(set(peers)))


@given(peers_strategy, st.randoms())
def test_order_independent(peers: list[Peer], rng: random.Random) -> None:
    """Two pods that saw the same peers in any order write identical files."""
    shuffled = list(peers)
    rng.shuffle(shuffled)
    assert render_flatfile(shuffled) == render_flatfile(peers)


def test_parse_skips_comments_and_rejects_missing_port() -> None:
    """Comments and blank lines are skipped; a line without a port is an error, not inherited."""
    assert parse_flatfile("# c\n\n10.0.0.1:1\n") == (Peer(ipaddress.ip_address("10.0.0.1"), 1),)
    with pytest.raises(ValueError, match="line 2"):
        parse_flatfile("10.0.0.1:1\n10.0.0.2\n")


def test_write_creates_parent_and_leaves_no_temp(tmp_path: Path) -> None:
    """Writing creates the directory and leaves only the flatfile behind."""
    target = tmp_path / "a" / "b" / "flatfile"
    write_flatfile(target, [Peer.parse("10.0.0.1", 54321)])
    assert target.read_text() == "10.0.0.1:54321\n"
    assert os.listdir(target.parent) == ["flatfile"]


def test_write_replaces_atomically(tmp_path: Path) -> None:
    """A rewrite replaces the file through a rename: an open reader keeps the old content."""
    target = tmp_path / "flatfile"
    write_flatfile(target, [Peer.parse("10.0.0.1", 1)])
    with target.open() as reader:
        write_flatfile(target, [Peer.parse("10.0.0.2", 2)])
        assert reader.read() == "10.0.0.1:1\n"
    assert target.read_text() == "10.0.0.2:2\n"


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    """A parent that cannot be created gives a FlatfileError naming the path, no temp file."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(FlatfileError, match="cannot write the flatfile"):
        write_flatfile(blocker / "flatfile", [Peer.parse("10.0.0.1", 1)])


async def read_pipe(path: Path) -> tuple[asyncio.subprocess.Process, asyncio.Task[bytes]]:
    """A reader like H2O: ``cat`` opens the pipe and reads it to the end."""
    reader = await asyncio.create_subprocess_exec("cat", str(path), stdout=asyncio.subprocess.PIPE)
    assert reader.stdout is not None
    return reader, asyncio.create_task(reader.stdout.read())


async def test_pipe_delivers_every_byte_then_end_of_file(tmp_path: Path) -> None:
    """A reader that opens the pipe later gets the whole flatfile, more than a pipe buffer
    (64 KiB) included, and then end of file."""
    path = tmp_path / "sub" / "flatfile"
    make_flatfile_pipe(path)
    assert stat.S_ISFIFO(path.stat().st_mode)
    peers = [Peer.parse(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 54321) for i in range(5000)]
    feeding = asyncio.create_task(feed_flatfile_pipe(path, peers, reader_alive=lambda: True))
    reader, content = await read_pipe(path)  # the writer is already waiting for a reader
    async with asyncio.timeout(10):
        assert await feeding is True
        assert (await content).decode() == render_flatfile(peers)
        assert await reader.wait() == 0


async def test_pipe_without_a_reader_gives_up_when_told(tmp_path: Path) -> None:
    """No reader ever opens the pipe and the JVM is gone: the writer kept trying without
    blocking in open(), then gives up with False."""
    path = tmp_path / "flatfile"
    make_flatfile_pipe(path)
    asked = [0]

    def alive() -> bool:
        asked[0] += 1
        return asked[0] <= 3  # the JVM dies after three tries

    async with asyncio.timeout(5):
        assert await feed_flatfile_pipe(path, [PEER], reader_alive=alive) is False
    assert asked[0] == 4


def test_pipe_replaces_a_stale_file(tmp_path: Path) -> None:
    """A flatfile left by an earlier start is replaced by the pipe, never read by the new JVM."""
    path = tmp_path / "flatfile"
    path.write_text("10.0.0.9:54321\n")
    make_flatfile_pipe(path)
    assert stat.S_ISFIFO(path.stat().st_mode)


def test_pipe_in_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    """The pipe cannot be made: FlatfileError naming the path, not an OSError."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(FlatfileError, match="cannot create the flatfile pipe"):
        make_flatfile_pipe(blocker / "flatfile")
