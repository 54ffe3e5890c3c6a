"""``run``: the container entrypoint, a lifecycle of explicit states.

    without the early start:  serve-probes -> find-peers -> launch -> run
    with the early start:     launch-early -> serve-probes -> find-peers -> hand-over -> run

Each state is one method that does its step and reports how it went: done, failed (with the
exit status that says why), stopped by a signal, or the JVM exited. ``Entrypoint.decide`` is the
one place that turns a state and its outcome into the next state or the exit status.

With ``H2O_JVM_EARLY_START`` the JVM starts first (``launch-early``), on a named pipe as its
flatfile, and boots while the lookup runs; the peers are written into the pipe once they are
agreed (``hand-over``). Until then that JVM belongs to no cloud: whatever ends the path before
the hand-over (a port in use, a failed lookup, a stop signal) leads to ``discard``, which kills
it, and the pod ends as if it had never started.

Signals: until the JVM has its peers, a stop signal ends the current step at once and no JVM
is started (or the waiting one is discarded). In ``run``, SIGTERM and SIGINT turn readiness off,
are forwarded, and after the grace time the JVM's process group is killed; every other
forwarded signal just passes through. What stops a running H2O (a signal, a lost cloud, a cloud
that never formed) is kept, the first one only, and decides the exit status with the JVM's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from h2o_k8s_discovery import exit_codes
from h2o_k8s_discovery.commands.lifecycle import (
    EARLY_PATH,
    JVM_WAITING,
    PLAIN_PATH,
    STATUS_OF_STOP,
    Done,
    Exit,
    Failed,
    JvmExited,
    Outcome,
    State,
    StopCause,
    Stopped,
    Stopping,
)
from h2o_k8s_discovery.config.h2o_args import H2OArgs, read_h2o_args
from h2o_k8s_discovery.config.redaction import redacted
from h2o_k8s_discovery.config.rest_security import RestAccess
from h2o_k8s_discovery.config.settings import Settings
from h2o_k8s_discovery.discovery.ip_family import with_ip_family
from h2o_k8s_discovery.discovery.own_address import (
    early_start_address,
    known_address,
    own_ip,
    with_self,
)
from h2o_k8s_discovery.errors import FlatfileError, LaunchError, ProbeServerError
from h2o_k8s_discovery.flatfile.format import write_flatfile
from h2o_k8s_discovery.flatfile.pipe import feed_flatfile_pipe, make_flatfile_pipe
from h2o_k8s_discovery.jvm.command import check_jar, jvm_command, jvm_environment
from h2o_k8s_discovery.jvm.startup_cache import cached_startup_options
from h2o_k8s_discovery.jvm.supervisor import FORWARDED_SIGNALS, Supervisor
from h2o_k8s_discovery.peers import IPAddress, Peer, Snapshot
from h2o_k8s_discovery.server.node_state import NodeState, Phase

if TYPE_CHECKING:
    from h2o_k8s_discovery.discovery.lookup import PollEvent
    from h2o_k8s_discovery.server.probes import ProbeServer

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Signals that stop the entrypoint; the others are only passed on to the JVM.
_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT})
#: Once the JVM runs, these begin the graceful shutdown; HUP and QUIT are only forwarded (H2O
#: and the JVM give them their own meaning, e.g. QUIT prints a thread dump).
_SHUTDOWN_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


async def run_entrypoint(
    settings: Settings,
    extra_args: Sequence[str],
    env: Mapping[str, str],
    *,
    h2o_args: H2OArgs | None = None,
    access: RestAccess | None = None,
) -> int:
    """Run the whole lifecycle; returns the exit status for the container.

    ``h2o_args``: what ``read_h2o_args`` found in ``extra_args`` (read here when not given).
    ``access``: how to call H2O's REST API when it runs a login service or HTTPS.
    Raises ``ConfigError`` before anything starts when the settings cannot be honoured here
    (``H2O_JVM_EARLY_START=true`` without a known address, a contradicting argument).
    """
    if h2o_args is None:
        h2o_args = read_h2o_args(extra_args, settings.launch.pod_ip)
    entrypoint = Entrypoint(settings, extra_args, env, h2o_args)
    entrypoint.access = access
    return await entrypoint.run()


class Entrypoint:
    """One pod's lifecycle; owns the node state, the JVM's supervisor and the probe server."""

    def __init__(
        self,
        settings: Settings,
        extra_args: Sequence[str],
        env: Mapping[str, str],
        h2o_args: H2OArgs | None = None,
    ) -> None:
        self.settings = settings
        #: The lookup's settings, with one address family settled for the lookup, the agreement
        #: and this pod's own address (``auto`` decided once, here).
        self.lookup = with_ip_family(settings.lookup)
        self.extra_args = tuple(extra_args)
        self.h2o_args = h2o_args or H2OArgs()
        self.env = env
        self.state = NodeState(
            ready_until_formed=settings.probe.ready_until_formed,
            loss_timeout=settings.probe.cloud_loss_timeout,
        )
        #: This pod's address as known before any DNS answer (POD_IP, /etc/hosts), if at all.
        self.known_ip = known_address(settings.launch.pod_ip, family=self.lookup.ip_family)
        #: Where an early-started JVM runs; ``None``: no early start.
        self.early_ip: IPAddress | None = early_start_address(
            settings.launch.early_start, self.known_ip
        )
        #: The states this pod goes through when every step is done.
        self.path = PLAIN_PATH if self.early_ip is None else EARLY_PATH
        #: The state whose step runs now.
        self.at = self.path[0]
        #: The peers found and agreed on (``find-peers``), this pod included.
        self.peers: Snapshot = ()
        #: The exit status ``discard`` ends with, unless the JVM ended by itself first.
        self.discarded_for = exit_codes.FAILURE
        self.supervisor = Supervisor()
        self.server: ProbeServer | None = None
        self.stop_signal: signal.Signals | None = None
        self.stopped = asyncio.Event()
        self.stopping: Stopping | None = None
        #: Ends the lookup when an early-started JVM dies while it waits for its peers.
        self.early_exit_watch: asyncio.Task[None] | None = None
        #: How to call H2O's REST API (``config/rest_security.py``); ``None``: plain HTTP.
        self.access: RestAccess | None = None
        self._steps: dict[State, Callable[[], Awaitable[Outcome]]] = {
            State.LAUNCH_EARLY: self._launch_early,
            State.SERVE_PROBES: self._serve_probes,
            State.FIND_PEERS: self._find_and_agree,
            State.HAND_OVER: self._hand_over,
            State.LAUNCH: self._write_and_launch,
            State.RUN: self._run_jvm,
            State.DISCARD: self._discard_waiting_jvm,
        }
        if settings.probe.exit_on_cloud_loss:
            self.state.on_damage = self._on_cloud_damage

    @property
    def jvm_waits_for_peers(self) -> bool:
        """True while an early-started JVM runs without peers (until the hand-over, or its end)."""
        return self.path is EARLY_PATH and self.at in JVM_WAITING

    async def run(self) -> int:
        self.supervisor.start()
        self._install_signal_handlers()
        try:
            return await self._live()
        except Exception:
            # A bug: say so once, with the traceback, and leave nothing behind. An exception
            # that escaped would hide the JVM's status and, outside PID 1, leave it running.
            log.exception("unexpected error: stopping H2O and exiting 1; this is a bug")
            await self._kill_everything()
            return exit_codes.FAILURE
        finally:
            if self.early_exit_watch is not None:
                self.early_exit_watch.cancel()
            self._remove_signal_handlers()
            if self.server is not None:
                await self.server.stop()
            self.supervisor.close()

    async def _live(self) -> int:
        """Each state's step in turn, as ``decide`` says, until it says which exit status."""
        while True:
            outcome = await self._steps[self.at]()
            decided = self.decide(self.at, outcome)
            if isinstance(decided, Exit):
                return decided.status
            self.at = decided

    def decide(self, state: State, outcome: Outcome) -> State | Exit:
        """What follows ``state`` after ``outcome``: the next state, or the exit status."""
        if isinstance(outcome, Done):
            return self.path[self.path.index(state) + 1]
        if isinstance(outcome, Failed):
            return self._end_before_peers(state, outcome.status)
        if isinstance(outcome, Stopped):
            signum = self.stop_signal or signal.SIGTERM
            return self._end_before_peers(state, exit_codes.SIGNAL_BASE + signum)
        return Exit(self._status_after_jvm(state, outcome))

    def _status_after_jvm(self, state: State, jvm: JvmExited) -> int:
        """The container's exit status once the JVM has ended, in ``run`` or ``discard``."""
        if state is State.DISCARD:
            # A JVM that ended by itself says why in its own status; a killed one says nothing.
            return jvm.status if jvm.by_itself else self.discarded_for
        if self.stopping is None:
            return jvm.status
        return STATUS_OF_STOP.get(self.stopping.cause, jvm.status)

    def _end_before_peers(self, state: State, status: int) -> State | Exit:
        """The path ends before H2O has its peers: with ``status``, the waiting JVM discarded."""
        if self.path is EARLY_PATH and state in JVM_WAITING:
            self.discarded_for = status
            return State.DISCARD
        return Exit(status)

    async def _kill_everything(self) -> None:
        """SIGKILL the JVM's process group and whatever it left with us, and reap the JVM."""
        self.state.phase = Phase.STOPPING
        self.supervisor.forward(signal.SIGKILL)
        if self.supervisor.running:
            self.state.exit_status = await self.supervisor.wait()
            log.info("H2O was killed (status %d)", self.state.exit_status)
        self.supervisor.kill_adopted()
        self.state.phase = Phase.EXITED

    # -- the steps, one per state ---------------------------------------------------------------

    async def _launch_early(self) -> Outcome:
        """Start the JVM on a flatfile pipe before the lookup."""
        launch = self.settings.launch
        assert self.early_ip is not None  # noqa: S101 - only on the early path
        self.state.self_peer = Peer(self.early_ip, self._own_port())
        log.info("starting the JVM early, at %s (from %s)", self.early_ip, self.known_ip.source)
        try:
            make_flatfile_pipe(launch.flatfile)
        except FlatfileError as err:
            log.error("%s", err)
            return Failed(exit_codes.FLATFILE)
        try:
            self._launch(launch.flatfile, waiting=True)
        except LaunchError as err:
            log.error("%s", err)
            return Failed(err.exit_status)
        self.early_exit_watch = asyncio.create_task(self._notice_early_exit(), name="early-jvm")
        return Done()

    async def _notice_early_exit(self) -> None:
        # A JVM that dies while it waits (bad JAVA_OPTS, no memory) ends the lookup at once.
        await self.supervisor.wait()
        if self.jvm_waits_for_peers:
            self.stopped.set()

    async def _serve_probes(self) -> Outcome:
        # The HTTP server, the DNS client and the agreement client are imported only now (and
        # the lookup's modules only in the lookup): with an early start, H2O boots meanwhile.
        from h2o_k8s_discovery.server.probes import ProbeServer  # noqa: PLC0415

        self.server = ProbeServer(self.state, self.settings.probe.api_port)
        try:
            await self.server.start()
        except ProbeServerError as err:
            log.error("%s", err)
            return Failed(exit_codes.PORT_IN_USE)
        return Done()

    async def _find_and_agree(self) -> Outcome:
        found = await self._until_stopped(self._find_peers())
        if isinstance(found, Stopped | Failed):
            return found
        self.peers = found
        return Done()

    async def _hand_over(self) -> Outcome:
        """Write the peers into the waiting JVM's pipe, then leave a plain flatfile there."""
        flatfile, peers = self.settings.launch.flatfile, self.peers
        try:
            fed = await self._until_stopped(
                feed_flatfile_pipe(flatfile, peers, reader_alive=lambda: self.supervisor.running)
            )
        except FlatfileError as err:
            log.error("%s", err)
            return Failed(exit_codes.FLATFILE)
        if fed is not True:
            return Stopped()  # a stop signal, or the waiting JVM died: discarded either way
        self.state.phase = Phase.FORMING
        self._log_flatfile(peers, "handed to the waiting JVM")
        try:
            # H2O has read the pipe: a plain file now, for whoever looks at the pod.
            write_flatfile(flatfile, peers)
        except FlatfileError as err:
            log.warning("%s (H2O already has its peers)", err)
        return Done()

    async def _write_and_launch(self) -> Outcome:
        """Write the flatfile and start the JVM on it."""
        try:
            write_flatfile(self.settings.launch.flatfile, self.peers)
        except FlatfileError as err:
            log.error("%s", err)
            return Failed(exit_codes.FLATFILE)
        self._log_flatfile(self.peers, "written")
        try:
            self._launch(self.settings.launch.flatfile)
        except LaunchError as err:
            log.error("%s", err)
            return Failed(err.exit_status)
        return Done()

    async def _run_jvm(self) -> Outcome:
        """Watch the cloud until the JVM exits; then nothing it started is left running."""
        from h2o_k8s_discovery.cloud.watch import watch_node  # noqa: PLC0415 - see _serve_probes

        watching = asyncio.create_task(
            watch_node(self.state, self.access, context_path=self.h2o_args.context_path),
            name="watch-node",
        )
        deadline = asyncio.create_task(self._formation_deadline(), name="formation-deadline")
        try:
            status = await self._jvm_exit(watching)
            if self.stopping is not None:
                status = await self.stopping.task
        finally:
            for task in (deadline, watching):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # Whatever the JVM left running goes with it: its process group, as under tini -g, and
        # anything that left the group and was handed to us as the subreaper.
        self.supervisor.forward(signal.SIGKILL)
        self.supervisor.kill_adopted()
        self.state.phase = Phase.EXITED
        self.state.exit_status = status
        return JvmExited(status)

    async def _discard_waiting_jvm(self) -> Outcome:
        """Kill the JVM that never got its peers, and all it started."""
        ended_by_itself = not self.supervisor.running
        self.supervisor.forward(signal.SIGKILL)
        jvm_status = await self.supervisor.wait()
        self.supervisor.kill_adopted()
        self.state.phase = Phase.EXITED
        self.state.exit_status = jvm_status
        with contextlib.suppress(OSError):
            self.settings.launch.flatfile.unlink()
        if ended_by_itself:
            log.error("H2O exited with status %d before it was given its peers", jvm_status)
        else:
            log.info("the waiting H2O JVM was stopped before it was given any peers")
        return JvmExited(jvm_status, by_itself=ended_by_itself)

    # -- what the steps share ---------------------------------------------------------------------

    def _log_flatfile(self, peers: Snapshot, how: str) -> None:
        log.info(
            "flatfile %s lists %d peer(s): %s (%s)",
            self.settings.launch.flatfile,
            len(peers),
            " ".join(map(str, peers)),
            how,
            extra={"event": "flatfile", "peers": [str(peer) for peer in peers]},
        )

    async def _until_stopped(self, work: Coroutine[Any, Any, T]) -> T | Stopped:
        """``work``'s result, or ``Stopped`` when a stop signal came first (``work`` cancelled)."""
        task = asyncio.create_task(work, name="find-peers")
        stopped = asyncio.create_task(self.stopped.wait(), name="stop-signal")
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if task.done() and not self.stopped.is_set():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return Stopped()

    async def _find_peers(self) -> Snapshot | Failed:
        """The peers to write, this node included, or why there are none."""
        from h2o_k8s_discovery.discovery.lookup import discover_peers  # noqa: PLC0415

        lookup = self.lookup
        started = time.monotonic()
        result = await discover_peers(lookup, on_poll=self._on_poll)
        self.state.lookup_seconds = result.elapsed
        pod_ip = own_ip(self.known_ip.ip, result.peers, lookup.ip_family)
        me = Peer(pod_ip, self._own_port())
        self.state.self_peer = me
        shortfall = result.shortfall(lookup)
        if shortfall is not None:
            log.error("no H2O started (H2O_NODE_LOOKUP_FAIL_ON_TIMEOUT): %s", shortfall)
            return Failed(exit_codes.LOOKUP_FAILED)
        peers = with_self(result.peers, me)
        self.state.peers = peers
        if lookup.agreement and len(peers) > 1:
            return await self._agree(peers, me, started)
        return peers

    async def _agree(self, peers: Snapshot, me: Peer, started: float) -> Snapshot | Failed:
        from h2o_k8s_discovery.discovery.refresh import agree_on_peers  # noqa: PLC0415

        def propose(current: Snapshot) -> None:
            self.state.peers = current

        agreed, outcome = await agree_on_peers(
            self.lookup,
            peers,
            me,
            self.settings.probe.api_port,
            lookup_started=started,
            on_peers=propose,
        )
        self.state.agreement = outcome.describe()
        if outcome.complete:
            log.info(
                "all %d peers agree on the peer set",
                len(agreed),
                extra={"event": "agreement", "peers": len(agreed), "agreed": True},
            )
            return agreed
        if self.lookup.fail_on_timeout:
            log.error("no H2O started: the peers did not agree in time: %s", outcome.describe())
            return Failed(exit_codes.LOOKUP_FAILED)
        log.warning(
            "the peers did not agree before the timeout (%s); starting with this pod's view",
            outcome.describe(),
        )
        return agreed

    def _own_port(self) -> int:
        return self.settings.lookup.h2o_port

    def _on_poll(self, event: PollEvent) -> None:
        if event.error is not None:
            self.state.last_dns_error = str(event.error)
            self.state.count_dns_error(event.error.kind)
        elif event.peers is not None:
            self.state.peers = event.peers
            self.state.dns_polls += 1

    def _launch(self, flatfile: Path, *, waiting: bool = False) -> None:
        launch = self.settings.launch
        me = self.state.self_peer
        assert me is not None  # noqa: S101 - set by the lookup, or from POD_IP
        check_jar(launch.jar)
        argv = jvm_command(
            launch,
            flatfile=flatfile,
            port=me.port,
            own_ip=me.ip,
            extra_args=self.extra_args,
            startup_options=cached_startup_options(
                launch.startup_cache,
                explicit=launch.startup_cache_explicit,
                jar=launch.jar,
                java_opts=launch.java_opts,
                env=self.env,
            ),
        )
        if not waiting:
            self.state.phase = Phase.LAUNCHING
        log.info(
            "launching H2O%s: %s",
            " early, to wait for its peers on the flatfile pipe" if waiting else "",
            " ".join(redacted(argv)),
        )
        self.state.jvm_pid = self.supervisor.spawn(argv, jvm_environment(self.env))
        self.state.jvm_starts += 1
        if not waiting:
            self.state.phase = Phase.FORMING

    async def _jvm_exit(self, watching: asyncio.Task[None]) -> int:
        """The JVM's exit status; raises what ended the watcher if it crashed first."""
        jvm = asyncio.create_task(self.supervisor.wait(), name="jvm-exit")
        await asyncio.wait({jvm, watching}, return_when=asyncio.FIRST_COMPLETED)
        error = watching.exception() if watching.done() and not watching.cancelled() else None
        if error is not None:
            jvm.cancel()
            raise error
        return await jvm

    # -- what stops a running H2O -----------------------------------------------------------------

    def _stop_h2o(self, cause: StopCause, signum: signal.Signals) -> None:
        """Begin stopping the running H2O: ``signum`` to its group, SIGKILL after the grace."""
        self.state.phase = Phase.STOPPING
        grace = self.settings.launch.shutdown_grace
        task = asyncio.create_task(self.supervisor.terminate(grace, signum))
        self.stopping = Stopping(cause, task)

    async def _formation_deadline(self) -> None:
        """Stop H2O when the full cloud has not formed in time (``formation_timeout``)."""
        timeout = self.settings.probe.formation_timeout
        if timeout is None:
            return
        await asyncio.sleep(timeout)
        if self.state.phase is not Phase.FORMING or self.stopping is not None:
            return
        cloud = self.state.cloud
        view = (
            "the local H2O node does not answer"
            if cloud is None
            else f"the local H2O node reports a cloud of {cloud.cloud_size} "
            f"({' '.join(cloud.members) or 'no member'}), consensus {cloud.consensus}"
        )
        log.error(
            "no cloud of %d formed within %gs of starting H2O (H2O_CLOUD_FORMATION_TIMEOUT): %s; "
            "H2O takes no node in once a smaller cloud formed (a jar of another build, a node "
            "too late), so H2O is stopped and the pod restarts",
            self.state.expected_size,
            timeout,
            view,
        )
        self._stop_h2o(StopCause.NOT_FORMED, signal.SIGTERM)

    def _on_cloud_damage(self, damage: str) -> None:
        if self.stopping is not None or not self.supervisor.running:
            return
        log.error(
            "H2O cannot heal a damaged cloud (%s): stopping it so the pod restarts "
            "(H2O_EXIT_ON_CLOUD_LOSS)",
            damage,
        )
        self._stop_h2o(StopCause.CLOUD_LOST, signal.SIGTERM)

    def _on_signal(self, signum: signal.Signals) -> None:
        if self.supervisor.running and not self.jvm_waits_for_peers:
            self._signal_jvm(signum)
        elif signum in _STOP_SIGNALS:
            log.info("%s received before H2O started: stopping", signum.name)
            self.stop_signal = self.stop_signal or signum
            self.state.phase = Phase.STOPPING
            self.stopped.set()
        else:
            log.info("%s received before H2O started: ignored", signum.name)

    def _signal_jvm(self, signum: signal.Signals) -> None:
        if signum not in _SHUTDOWN_SIGNALS:
            self.supervisor.forward(signum)
            return
        if self.stopping is None:
            grace = self.settings.launch.shutdown_grace
            log.info("%s received: stopping H2O, %gs before it is killed", signum.name, grace)
            self._stop_h2o(StopCause.SIGNAL, signum)
        else:
            self.state.phase = Phase.STOPPING
            self.supervisor.forward(signum)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in FORWARDED_SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in FORWARDED_SIGNALS:
            loop.remove_signal_handler(signum)
