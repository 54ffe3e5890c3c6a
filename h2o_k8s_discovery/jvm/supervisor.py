"""Run one child (the JVM) the way a container's PID 1 must: spawn, forward, reap, report.

The non-obvious decision: exactly one owner reaps. A single SIGCHLD handler loops
``waitpid(-1, WNOHANG)`` and collects *every* child of this process, the JVM and any orphan
reparented to us (we are PID 1, or a child subreaper otherwise). The JVM's status is handed to
``wait()`` through a future. Nothing else in the process may wait for children while a
``Supervisor`` is started: asyncio's child watchers and ``Popen.wait`` would race the reaper and
report a made-up status (255 or 0) for a child whose real status the reaper already took.

Exit statuses follow the shell (and tini): the child's code, ``128 + signal`` when it was
killed, 127 when the program is not found and 126 when it cannot be executed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from h2o_k8s_discovery.errors import LaunchError

__all__ = ["FORWARDED_SIGNALS", "Supervisor"]

log = logging.getLogger(__name__)

#: Signals the runner should catch and pass on with ``Supervisor.forward``. PID 1 has no
#: default action for any signal, so each one we want the JVM to see must be handled.
FORWARDED_SIGNALS: tuple[signal.Signals, ...] = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)

_PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>

# Every signal whose disposition can be changed; the child gets SIG_DFL for all of them, so
# nothing we (or Python: SIGPIPE, SIGXFSZ) ignore leaks into the JVM. glibc's own internal
# signals (32 and 33) are not in valid_signals(): its posix_spawn leaves them ignored in the
# child, and glibc installs its handlers for them whenever the new program needs them.
_CATCHABLE = frozenset(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP})

# execve errors the shell reports as "command not found" (127); every other one is 126.
_NOT_FOUND = frozenset({errno.ENOENT, errno.ENOTDIR})


def _exit_status(wait_status: int) -> int:
    """Turn a raw ``waitpid`` status into the shell's exit status (signal N -> 128 + N)."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def _describe(wait_status: int) -> str:
    """Say how a child ended, from its raw ``waitpid`` status, for the log line."""
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        return f"was killed by {_signame(sig)} (status {128 + sig})"
    return f"exited with code {os.waitstatus_to_exitcode(wait_status)}"


def _set_subreaper(on: bool) -> bool:
    """Ask the kernel to reparent our orphaned descendants to us; True when it agreed."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        result = int(libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0))
    except (OSError, AttributeError) as err:  # no libc or no prctl: not Linux
        log.warning("cannot change the child subreaper flag (%s); orphans will go to PID 1", err)
        return False
    if result != 0:
        err_no = ctypes.get_errno()
        log.warning(
            "cannot change the child subreaper flag (%s); orphans will go to PID 1",
            os.strerror(err_no),
        )
        return False
    log.debug("child subreaper flag %s", "set" if on else "cleared")
    return True


class Supervisor:
    """Owns one child process: spawns it, forwards signals to its group and reaps everything.

    Call ``start()`` from inside the running event loop before ``spawn()``, and ``close()``
    once done. One ``Supervisor`` runs one child.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self._started = False
        self._subreaper = False
        self._pid: int | None = None
        self._program = ""
        self._status: asyncio.Future[int] | None = None
        self._exit: int | None = None

    @property
    def pid(self) -> int | None:
        """The child's pid (also its process group id), or None before ``spawn()``."""
        return self._pid

    @property
    def running(self) -> bool:
        """True from ``spawn()`` until the child has been reaped."""
        return self._status is not None and not self._status.done()

    @property
    def exit_status(self) -> int | None:
        """The child's exit status once reaped (code, or 128 + signal), else None."""
        return self._exit

    def start(self) -> None:
        """Install the SIGCHLD reaper; when not PID 1, also become a child subreaper."""
        if self._started:
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._loop.add_signal_handler(signal.SIGCHLD, self._reap)
        self._started = True
        if os.getpid() != 1:
            self._subreaper = _set_subreaper(True)
        self._reap()  # children that ended before the handler existed

    def spawn(self, argv: Sequence[str], env: Mapping[str, str]) -> int:
        """Start ``argv`` in its own process group with default signal dispositions.

        ``argv[0]`` is looked up in this process's PATH when it has no slash. Raises
        ``LaunchError`` (exit status 127 not found, 126 not executable) when it cannot start.
        """
        if not self._started or self._loop is None:
            raise RuntimeError("Supervisor.start() must be called before spawn()")
        if self._status is not None:
            raise RuntimeError(f"Supervisor already runs a child (pid {self._pid})")
        if not argv:
            raise ValueError("argv is empty: nothing to run")
        program = argv[0]
        try:
            pid = os.posix_spawnp(
                program,
                list(argv),
                dict(env),
                setpgroup=0,
                setsigdef=_CATCHABLE,
                setsigmask=(),
            )
        except OSError as err:
            raise _launch_error(program, err) from err
        self._pid = pid
        self._program = program
        self._status = self._loop.create_future()
        log.info("started %s as pid %d", program, pid)
        self._reap()  # it may already be gone, and its SIGCHLD may have been coalesced
        return pid

    async def wait(self) -> int:
        """Wait for the child to end; return its code, or 128 + signal when killed."""
        if self._status is None:
            raise RuntimeError("no child: call spawn() first")
        # shield: a caller giving up (timeout, cancel) must not cancel the shared result.
        return await asyncio.shield(self._status)

    def forward(self, sig: int) -> None:
        """Send ``sig`` to the child's process group; nothing happens if it is gone."""
        if self._pid is None:
            log.debug("no child yet: signal %s not forwarded", _signame(sig))
            return
        try:
            os.killpg(self._pid, sig)
        except ProcessLookupError:
            log.debug("process group %d is gone: %s not delivered", self._pid, _signame(sig))
        else:
            log.debug("forwarded %s to process group %d", _signame(sig), self._pid)

    async def terminate(self, grace: float, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` to the group, wait up to ``grace`` seconds, then SIGKILL it.

        Returns the child's exit status.
        """
        if self._status is None:
            raise RuntimeError("no child: call spawn() first")
        if not self.running:
            return await self.wait()
        self.forward(sig)
        try:
            async with asyncio.timeout(max(grace, 0.0)):
                return await self.wait()
        except TimeoutError:
            log.warning(
                "pid %d still running %.1f s after %s: sending SIGKILL to its group",
                self._pid,
                grace,
                _signame(sig),
            )
        self.forward(signal.SIGKILL)
        return await self.wait()

    def kill_adopted(self) -> None:
        """SIGKILL every remaining child: descendants that left the JVM's group and were
        reparented to us as the subreaper. As PID 1 the kernel does this when we exit; as a
        subreaper nobody would, and they would outlive the container's main process.
        """
        me = str(os.getpid())
        for entry in os.listdir("/proc"):
            if not entry.isdecimal() or int(entry) == self._pid:
                continue
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            ppid = next(
                (line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), None
            )
            if ppid == me:
                log.warning("killing pid %s, left behind by the JVM", entry)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry), signal.SIGKILL)
        self._reap()

    def close(self) -> None:
        """Remove the SIGCHLD handler and give up the subreaper role, after a last reap."""
        if not self._started or self._loop is None:
            return
        self._reap()
        self._loop.remove_signal_handler(signal.SIGCHLD)
        self._started = False
        if self._subreaper:
            _set_subreaper(False)
            self._subreaper = False
        if self._status is not None and not self._status.done():
            log.warning("supervisor closed while pid %d still runs; nobody will reap it", self._pid)
            self._status.set_exception(
                RuntimeError(f"supervisor closed before pid {self._pid} ended")
            )

    def _reap(self) -> None:
        """Collect every ended child; resolve ``wait()`` when it is ours."""
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:  # ECHILD: no children at all
                return
            if pid == 0:  # children exist, none has ended
                return
            if pid == self._pid and self._status is not None and not self._status.done():
                log.info("%s (pid %d) %s", self._program, pid, _describe(wait_status))
                self._exit = _exit_status(wait_status)
                self._status.set_result(self._exit)
            else:
                log.debug("reaped orphan pid %d: %s", pid, _describe(wait_status))


def _launch_error(program: str, err: OSError) -> LaunchError:
    """Explain why ``program`` could not start, with the shell's exit status."""
    reason = err.strerror or str(err)
    if err.errno in _NOT_FOUND:
        if "/" in program:
            where = "no such file"
        else:  # glibc's posix_spawnp searches our own PATH, not the child's
            where = f"not found in PATH={os.environ.get('PATH', os.defpath)!r}"
        return LaunchError(
            f"cannot start {program!r}: {where} ({reason}); check the path or install it", 127
        )
    return LaunchError(
        f"cannot start {program!r}: {reason}; "
        "it must be a regular file with the execute bit set, in a format the kernel runs",
        126,
    )


def _signame(sig: int) -> str:
    """``SIGTERM`` for 15; the number itself for anything unknown."""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)
