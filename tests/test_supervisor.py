"""Black-box tests of the Supervisor with real processes (stand-ins: ``tests/support/children``)."""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from h2o_k8s_discovery.errors import LaunchError
from h2o_k8s_discovery.jvm.supervisor import FORWARDED_SIGNALS, Supervisor

CHILDREN = Path(__file__).parent / "support" / "children"
LOGGER = "h2o_k8s_discovery.jvm.supervisor"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: unshare --pid creates a new PID namespace"
)
needs_unshare = pytest.mark.skipif(
    shutil.which("unshare") is None, reason="needs unshare(1) from util-linux"
)


def child(name: str, *args: str) -> list[str]:
    """The argv running the stand-in ``tests/support/children/<name>`` with this interpreter."""
    return [sys.executable, str(CHILDREN / name), *args]


async def until(condition: Callable[[], bool], what: str, within: float = 5.0) -> None:
    """Poll ``condition`` (letting the event loop, and so the reaper, run) until it holds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.005)


def group_gone(pgid: int) -> bool:
    """True when no process (zombies included) is left in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def parent_of(pid: int) -> int | None:
    """The PPid of ``pid`` from /proc, or None once the process has been reaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return None
    for line in status.splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid line in /proc/{pid}/status")


@pytest.fixture
async def sup() -> AsyncIterator[Supervisor]:
    """A started Supervisor; afterwards its child's whole group is killed and reaped."""
    supervisor = Supervisor()
    supervisor.start()
    try:
        yield supervisor
    finally:
        pid = supervisor.pid
        if pid is not None:
            supervisor.forward(signal.SIGKILL)
            await asyncio.wait_for(supervisor.wait(), 5)
            await until(lambda: group_gone(pid), f"process group {pid} to be reaped")
        supervisor.close()


# --- exit statuses ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 1, 42, 255])
async def test_exit_code_is_passed_through(
    sup: Supervisor, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A child's exit code is returned unchanged by wait() and logged in one line."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    pid = sup.spawn(child("exit_code.py", str(code)), os.environ)
    assert sup.pid == pid
    assert await sup.wait() == code
    assert not sup.running
    assert sup.exit_status == code
    ended = [r for r in caplog.records if r.name == LOGGER and "exited with code" in r.message]
    assert len(ended) == 1
    assert f"pid {pid}" in ended[0].message


@pytest.mark.parametrize(
    ("signame", "status"), [("SIGKILL", 137), ("SIGTERM", 143), ("SIGPIPE", 141)]
)
async def test_killed_child_reports_128_plus_signal(
    sup: Supervisor, signame: str, status: int
) -> None:
    """A child killed by a signal yields 128 + the signal number (SIGTERM -> 143)."""
    sup.spawn(child("self_kill.py", signame), os.environ)
    assert await asyncio.wait_for(sup.wait(), 5) == status


async def test_every_waiter_gets_the_status_and_a_cancelled_wait_does_not_lose_it(
    sup: Supervisor, tmp_path: Path
) -> None:
    """Giving up on wait() (timeout) leaves the status intact for later and concurrent waiters."""
    sup.spawn(child("sleeper.py", str(tmp_path / "ready")), os.environ)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(sup.wait(), 0.01)
    assert sup.running
    sup.forward(signal.SIGKILL)
    first, second = await asyncio.wait_for(asyncio.gather(sup.wait(), sup.wait()), 5)
    assert first == second == 137


# --- launch failures -------------------------------------------------------------------------


async def test_missing_program_by_path_is_127(sup: Supervisor, tmp_path: Path) -> None:
    """A program path that does not exist raises LaunchError 127 naming the path."""
    missing = tmp_path / "no-such-java"
    with pytest.raises(LaunchError) as caught:
        sup.spawn([str(missing), "-version"], os.environ)
    assert caught.value.exit_status == 127
    assert str(missing) in str(caught.value)
    assert sup.pid is None
    assert not sup.running


async def test_missing_program_in_path_is_127(sup: Supervisor) -> None:
    """A bare program name not found in PATH raises LaunchError 127 naming the program."""
    with pytest.raises(LaunchError) as caught:
        sup.spawn(["no-such-program-h2o-test"], os.environ)
    assert caught.value.exit_status == 127
    assert "'no-such-program-h2o-test'" in str(caught.value)
    assert "PATH" in str(caught.value)


def _no_exec_bit(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o644)
    return path


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


def _bad_format(path: Path) -> Path:
    path.write_text("this is not a program\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("make", [_no_exec_bit, _directory, _bad_format])
async def test_unexecutable_program_is_126(
    sup: Supervisor, tmp_path: Path, make: Callable[[Path], Path]
) -> None:
    """A file without the x bit, a directory or an unknown format raises LaunchError 126."""
    program = make(tmp_path / "java")
    with pytest.raises(LaunchError) as caught:
        sup.spawn([str(program)], os.environ)
    assert caught.value.exit_status == 126
    assert str(program) in str(caught.value)
    assert sup.pid is None


async def test_supervisor_still_works_after_a_launch_failure(
    sup: Supervisor, tmp_path: Path
) -> None:
    """After a LaunchError the same Supervisor can still spawn and wait for a child."""
    with pytest.raises(LaunchError):
        sup.spawn([str(tmp_path / "missing")], os.environ)
    sup.spawn(child("exit_code.py", "7"), os.environ)
    assert await asyncio.wait_for(sup.wait(), 5) == 7


async def test_close_while_running_fails_wait_instead_of_hanging(tmp_path: Path) -> None:
    """close() with the child still running makes wait() raise rather than wait for ever."""
    supervisor = Supervisor()
    supervisor.start()
    pid = supervisor.spawn(child("sleeper.py", str(tmp_path / "ready")), os.environ)
    supervisor.close()
    try:
        assert not supervisor.running
        with pytest.raises(RuntimeError, match="closed"):
            await supervisor.wait()
        assert supervisor.exit_status is None
    finally:  # nobody reaps it any more: do it here
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)  # noqa: ASYNC222 - no reaper left; a SIGKILLed child ends at once


async def test_spawn_before_start_is_refused() -> None:
    """spawn() without start() raises instead of creating a child nobody would reap."""
    with pytest.raises(RuntimeError, match="start"):
        Supervisor().spawn(child("exit_code.py", "0"), os.environ)


# --- what the child inherits -----------------------------------------------------------------


GLIBC_INTERNAL = tuple(range(signal.SIGRTMIN - 2, signal.SIGRTMIN))  # SIGCANCEL, SIGSETXID


def _sigmask_bits(*sigs: int) -> int:
    return sum(1 << (s - 1) for s in sigs)


async def test_child_gets_own_group_default_signals_and_empty_mask(
    sup: Supervisor, tmp_path: Path
) -> None:
    """The child leads its own process group and inherits neither ignored nor blocked signals."""
    out = tmp_path / "status.json"
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        pid = sup.spawn(child("proc_status.py", str(out)), os.environ)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        signal.signal(signal.SIGHUP, previous)
    assert await asyncio.wait_for(sup.wait(), 5) == 0
    seen: dict[str, int] = json.loads(out.read_text())
    assert seen["pid"] == pid
    assert seen["pgid"] == pid != os.getpgrp()
    assert seen["SigBlk"] == 0
    # The interpreter ignores SIGPIPE and SIGXFSZ at start-up. glibc's posix_spawn leaves its
    # own internal signals (32, 33: not in valid_signals(), so not resettable) ignored.
    allowed = _sigmask_bits(signal.SIGPIPE, signal.SIGXFSZ, *GLIBC_INTERNAL)
    assert seen["SigIgn"] & _sigmask_bits(signal.SIGHUP) == 0
    assert seen["SigIgn"] & ~allowed == 0


# --- forwarding ------------------------------------------------------------------------------


def test_forwarded_signals_are_the_ones_a_container_sends() -> None:
    """FORWARDED_SIGNALS lists TERM, INT, HUP, QUIT, USR1 and USR2 and never SIGCHLD/KILL."""
    assert set(FORWARDED_SIGNALS) == {
        signal.SIGTERM,
        signal.SIGINT,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGUSR1,
        signal.SIGUSR2,
    }


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGUSR1, 10), (signal.SIGHUP, 11)])
async def test_forward_delivers_the_signal_to_the_child(
    sup: Supervisor, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    """forward(sig) delivers exactly that signal to the child (it exits with a code naming it)."""
    ready = tmp_path / "ready"
    sup.spawn(child("trap.py", str(ready)), os.environ)
    await until(ready.exists, "the child's handlers")
    sup.forward(sig)
    assert await asyncio.wait_for(sup.wait(), 5) == code


async def test_forward_reaches_the_whole_process_group(sup: Supervisor, tmp_path: Path) -> None:
    """forward() signals the child's group, so a grandchild in that group gets it too."""
    sup.spawn(child("group.py", str(tmp_path)), os.environ)
    await until(
        lambda: (tmp_path / "child.ready").exists() and (tmp_path / "grandchild.ready").exists(),
        "both handlers",
    )
    sup.forward(signal.SIGUSR1)
    assert await asyncio.wait_for(sup.wait(), 5) == 0
    assert (tmp_path / "child.got-usr1").exists()
    assert (tmp_path / "grandchild.got-usr1").exists()


async def test_forward_is_harmless_before_spawn_and_after_exit(sup: Supervisor) -> None:
    """forward() does nothing (and raises nothing) with no child or a reaped one."""
    sup.forward(signal.SIGTERM)
    pid = sup.spawn(child("exit_code.py", "3"), os.environ)
    assert await asyncio.wait_for(sup.wait(), 5) == 3
    await until(lambda: group_gone(pid), "the group to vanish")
    sup.forward(signal.SIGTERM)
    assert sup.exit_status == 3


# --- terminate -------------------------------------------------------------------------------


async def test_terminate_kills_a_child_that_ignores_sigterm_after_grace(
    sup: Supervisor, tmp_path: Path
) -> None:
    """A child ignoring SIGTERM is SIGKILLed once grace is over: status 137, on time."""
    ready = tmp_path / "ready"
    sup.spawn(child("sleeper.py", str(ready), "--ignore-term"), os.environ)
    await until(ready.exists, "SIGTERM to be ignored")
    grace = 0.5
    started = time.monotonic()
    status = await asyncio.wait_for(sup.terminate(grace), grace + 5)
    elapsed = time.monotonic() - started
    assert status == 137
    assert grace <= elapsed < grace + 1.0


async def test_terminate_returns_143_at_once_when_the_child_obeys(
    sup: Supervisor, tmp_path: Path
) -> None:
    """A child that dies on SIGTERM ends terminate() with 143 well before the grace period."""
    ready = tmp_path / "ready"
    sup.spawn(child("sleeper.py", str(ready)), os.environ)
    await until(ready.exists, "the child to start")
    started = time.monotonic()
    assert await asyncio.wait_for(sup.terminate(10.0), 5) == 143
    assert time.monotonic() - started < 1.0


async def test_terminate_uses_the_signal_given(sup: Supervisor, tmp_path: Path) -> None:
    """terminate(grace, sig) sends sig first (here SIGUSR2, which the child reports as 12)."""
    ready = tmp_path / "ready"
    sup.spawn(child("trap.py", str(ready)), os.environ)
    await until(ready.exists, "the child's handlers")
    assert await asyncio.wait_for(sup.terminate(5.0, signal.SIGUSR2), 5) == 12


async def test_terminate_after_exit_returns_the_status(sup: Supervisor) -> None:
    """terminate() on a child that already ended returns its status without signalling."""
    sup.spawn(child("exit_code.py", "5"), os.environ)
    assert await asyncio.wait_for(sup.wait(), 5) == 5
    assert await sup.terminate(0.1) == 5


# --- reaping orphans when we are not PID 1 ---------------------------------------------------

_PR_GET_CHILD_SUBREAPER = 37


def is_subreaper() -> bool:
    """Whether this process is currently a child subreaper (prctl PR_GET_CHILD_SUBREAPER)."""
    flag = ctypes.c_int(0)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0
    return flag.value != 0


async def test_orphan_is_reparented_to_us_and_reaped(
    sup: Supervisor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not PID 1: an orphaned grandchild is reparented to this process and reaped when it dies."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    assert os.getpid() != 1
    assert is_subreaper()
    pidfile = tmp_path / "grandchild.pid"
    sup.spawn(child("orphan_maker.py", "--linger", str(pidfile)), os.environ)
    assert await asyncio.wait_for(sup.wait(), 5) == 0
    await until(pidfile.exists, "the grandchild's pid")
    orphan = int(pidfile.read_text())
    await until(lambda: parent_of(orphan) == os.getpid(), "the orphan to be reparented to us")
    os.kill(orphan, signal.SIGKILL)
    # Unreaped, it would stay in /proc as a zombie for ever.
    await until(lambda: parent_of(orphan) is None, "the orphan to be reaped")
    assert any(f"reaped orphan pid {orphan}" in r.getMessage() for r in caplog.records)


async def test_close_gives_up_the_subreaper_role() -> None:
    """close() undoes start(): this process stops being a child subreaper."""
    supervisor = Supervisor()
    supervisor.start()
    assert is_subreaper()
    supervisor.close()
    assert not is_subreaper()


# --- as the real PID 1 of a PID namespace ----------------------------------------------------


def run_as_pid1(tmp_path: Path, argv: list[str], *flags: str) -> tuple[int, dict[str, Any], str]:
    """Run ``pid1_driver.py`` as PID 1 of a new PID namespace; return rc, report, stderr."""
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            *child("pid1_driver.py", "--report", str(report), *flags, "--", *argv),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert report.exists(), f"driver wrote no report; stderr:\n{done.stderr}"
    result: dict[str, Any] = json.loads(report.read_text())
    return done.returncode, result, done.stderr


@pytest.mark.root
@needs_root
@needs_unshare
@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (child("exit_code.py", "0"), 0),
        (child("exit_code.py", "42"), 42),
        (child("self_kill.py", "SIGKILL"), 137),
        (child("self_kill.py", "SIGTERM"), 143),
    ],
)
def test_pid1_passes_the_exit_status_through(tmp_path: Path, argv: list[str], status: int) -> None:
    """As PID 1, the driver exits with the child's status (128 + signal when killed)."""
    rc, report, _ = run_as_pid1(tmp_path, argv)
    assert report["pid"] == 1
    assert report["status"] == status
    assert rc == status


@pytest.mark.root
@needs_root
@needs_unshare
def test_pid1_reaps_orphans(tmp_path: Path) -> None:
    """As PID 1, an orphaned grandchild that outlives the child is reaped: no zombie remains."""
    rc, report, stderr = run_as_pid1(tmp_path, child("orphan_maker.py", "--code", "3"))
    assert report["pid"] == 1
    assert rc == 3
    assert report["zombies"] == []
    assert report["left"] == []
    assert "reaped orphan pid" in stderr


@pytest.mark.root
@needs_root
@needs_unshare
def test_pid1_without_the_reaper_leaves_a_zombie(tmp_path: Path) -> None:
    """Negative control: a PID 1 that waits only for its own child leaves the orphan a zombie."""
    rc, report, _ = run_as_pid1(
        tmp_path, child("orphan_maker.py", "--code", "3"), "--naive", "--settle", "1"
    )
    assert report["pid"] == 1
    assert rc == 3
    assert len(report["zombies"]) == 1
    assert report["zombies"][0]["comm"].startswith("python")
