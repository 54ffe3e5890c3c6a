"""``run``: the container entrypoint, one function per lifecycle step.

probes up -> lookup -> flatfile -> JVM -> watch the cloud -> JVM exits -> exit with its status.

With ``H2O_JVM_EARLY_START`` the JVM starts first, on a named pipe as its flatfile, and boots
while the lookup runs; the peers are written into the pipe once they are agreed. Until then that
JVM belongs to no cloud: a failed lookup or a stop signal kills it, as if it had never started.

Signals decide the path: during the lookup, a stop signal ends it at once and no JVM is
started (or the waiting one is killed); once the JVM has its peers, SIGTERM and SIGINT turn
readiness off, are forwarded, and after the grace time the JVM's process group is killed; every
other forwarded signal just passes through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from h2o_k8s_discovery import exit_codes
from h2o_k8s_discovery.cloud.node_state import NodeState, Phase
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
from h2o_k8s_discovery.errors import DnsQueryError, FlatfileError, LaunchError, ProbeServerError
from h2o_k8s_discovery.flatfile.format import write_flatfile
from h2o_k8s_discovery.flatfile.pipe import feed_flatfile_pipe, make_flatfile_pipe
from h2o_k8s_discovery.jvm.command import check_jar, jvm_command, jvm_environment
from h2o_k8s_discovery.jvm.startup_cache import cached_startup_options
from h2o_k8s_discovery.jvm.supervisor import FORWARDED_SIGNALS, Supervisor
from h2o_k8s_discovery.peers import IPAddress, Peer, Snapshot, snapshot

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
        self.supervisor = Supervisor()
        self.server: ProbeServer | None = None
        self.stop_signal: signal.Signals | None = None
        self.stopped = asyncio.Event()
        self.shutdown: asyncio.Task[int] | None = None
        #: Ends the lookup when an early-started JVM dies while it waits for its peers.
        self.early_exit_watch: asyncio.Task[None] | None = None
        self.cloud_lost = False
        #: The full cloud did not form in time (``formation_timeout``): exit 69.
        self.formation_failed = False
        #: How to call H2O's REST API (``config/rest_security.py``); ``None``: plain HTTP, no login.
        self.access: RestAccess | None = None
        #: True while an early-started JVM waits for its peers on the flatfile pipe.
        self.jvm_waiting = False
        if settings.probe.exit_on_cloud_loss:
            self.state.on_damage = self._on_cloud_damage

    async def run(self) -> int:
        self.supervisor.start()
        self._install_signal_handlers()
        try:
            return await self._serve_and_live()
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

    async def _kill_everything(self) -> None:
        """SIGKILL the JVM's process group and whatever it left with us, and reap the JVM."""
        self.state.phase = Phase.STOPPING
        self.supervisor.forward(signal.SIGKILL)
        if self.supervisor.running:
            self.state.exit_status = await self.supervisor.wait()
            log.info("H2O was killed (status %d)", self.state.exit_status)
        self.supervisor.kill_adopted()
        self.state.phase = Phase.EXITED

    async def _serve_and_live(self) -> int:
        early = self.early_ip is not None
        if early and (status := self._launch_waiting()) is not None:
            return status
        # The HTTP server, the DNS client and the agreement client are imported only now (and
        # the lookup's modules only in the lookup): with an early start, H2O boots meanwhile.
        from h2o_k8s_discovery.server.probes import ProbeServer  # noqa: PLC0415

        self.server = ProbeServer(self.state, self.settings.probe.api_port)
        try:
            await self.server.start()
        except ProbeServerError as err:
            log.error("%s", err)
            if early:
                return await self._discard_waiting_jvm(exit_codes.PORT_IN_USE)
            return exit_codes.PORT_IN_USE
        return await self._lifecycle()

    async def _lifecycle(self) -> int:
        early = self.early_ip is not None
        peers = await self._until_stopped(self._find_peers())
        if peers is None or isinstance(peers, int):
            status = self._stopped_status() if peers is None else peers
            return await self._discard_waiting_jvm(status) if early else status
        failed = await self._hand_over(peers) if early else self._write_and_launch(peers)
        if failed is not None:
            return failed
        return await self._supervise()

    def _write_and_launch(self, peers: Snapshot) -> int | None:
        """Write the flatfile and start the JVM on it; an exit status if either fails."""
        try:
            write_flatfile(self.settings.launch.flatfile, peers)
        except FlatfileError as err:
            log.error("%s", err)
            return exit_codes.FLATFILE
        self._log_flatfile(peers, "written")
        try:
            self._launch(self.settings.launch.flatfile)
        except LaunchError as err:
            log.error("%s", err)
            return err.exit_status
        return None

    def _log_flatfile(self, peers: Snapshot, how: str) -> None:
        log.info(
            "flatfile %s lists %d peer(s): %s (%s)",
            self.settings.launch.flatfile,
            len(peers),
            " ".join(map(str, peers)),
            how,
            extra={"event": "flatfile", "peers": [str(peer) for peer in peers]},
        )

    def _launch_waiting(self) -> int | None:
        """Start the JVM on a flatfile pipe before the lookup; an exit status if it cannot."""
        launch = self.settings.launch
        assert self.early_ip is not None  # noqa: S101 - only called for an early start
        self.state.self_peer = Peer(self.early_ip, self._own_port())
        log.info("starting the JVM early, at %s (from %s)", self.early_ip, self.known_ip.source)
        try:
            make_flatfile_pipe(launch.flatfile)
        except FlatfileError as err:
            log.error("%s", err)
            return exit_codes.FLATFILE
        try:
            self._launch(launch.flatfile, waiting=True)
        except LaunchError as err:
            log.error("%s", err)
            return err.exit_status
        self.jvm_waiting = True
        self.early_exit_watch = asyncio.create_task(self._notice_early_exit(), name="early-jvm")
        return None

    async def _notice_early_exit(self) -> None:
        # A JVM that dies while it waits (bad JAVA_OPTS, no memory) ends the lookup at once.
        await self.supervisor.wait()
        if self.jvm_waiting:
            self.stopped.set()

    async def _hand_over(self, peers: Snapshot) -> int | None:
        """Write the peers into the waiting JVM's pipe; an exit status if that JVM is gone."""
        flatfile = self.settings.launch.flatfile
        try:
            fed = await self._until_stopped(
                feed_flatfile_pipe(flatfile, peers, reader_alive=lambda: self.supervisor.running)
            )
        except FlatfileError as err:
            log.error("%s", err)
            return await self._discard_waiting_jvm(exit_codes.FLATFILE)
        if not fed:
            return await self._discard_waiting_jvm(self._stopped_status())
        self.jvm_waiting = False
        self.state.phase = Phase.FORMING
        self._log_flatfile(peers, "handed to the waiting JVM")
        try:
            # H2O has read the pipe: a plain file now, for whoever looks at the pod.
            write_flatfile(flatfile, peers)
        except FlatfileError as err:
            log.warning("%s (H2O already has its peers)", err)
        return None

    async def _discard_waiting_jvm(self, status: int) -> int:
        """Kill the JVM that never got its peers, and all it started; return ``status``, or the
        JVM's own exit status when it ended by itself."""
        ended_by_itself = not self.supervisor.running
        self.supervisor.forward(signal.SIGKILL)
        jvm_status = await self.supervisor.wait()
        self.supervisor.kill_adopted()
        self.jvm_waiting = False
        self.state.phase = Phase.EXITED
        self.state.exit_status = jvm_status
        with contextlib.suppress(OSError):
            self.settings.launch.flatfile.unlink()
        if ended_by_itself:
            log.error("H2O exited with status %d before it was given its peers", jvm_status)
            return jvm_status
        log.info("the waiting H2O JVM was stopped before it was given any peers")
        return status

    async def _until_stopped(self, work: Coroutine[Any, Any, T]) -> T | None:
        """``work``'s result, or ``None`` when a stop signal came first (``work`` cancelled)."""
        task = asyncio.create_task(work, name="find-peers")
        stopped = asyncio.create_task(self.stopped.wait(), name="stop-signal")
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if task.done() and not self.stopped.is_set():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None

    async def _find_peers(self) -> Snapshot | int:
        """The peers to write, this node included, or the exit status when there are none."""
        from h2o_k8s_discovery.discovery.lookup import discover_peers  # noqa: PLC0415 - see run()

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
            return exit_codes.LOOKUP_FAILED
        peers = with_self(result.peers, me)
        self.state.peers = peers
        if lookup.agreement and len(peers) > 1:
            return await self._agree(peers, me, started)
        return peers

    async def _agree(self, peers: Snapshot, me: Peer, started: float) -> Snapshot | int:
        # Imported here, see run().
        from h2o_k8s_discovery.discovery.agreement import next_set, reach_agreement  # noqa: PLC0415
        from h2o_k8s_discovery.discovery.lookup import constraints_for  # noqa: PLC0415
        from h2o_k8s_discovery.discovery.query import make_resolver, poll_once  # noqa: PLC0415

        lookup = self.lookup
        constraints = constraints_for(lookup)
        resolver = make_resolver(lookup)
        current = [peers]
        agreement_deadline = time.monotonic() + lookup.agreement_timeout

        async def refresh() -> Snapshot:
            # A failed or empty poll keeps the set; see next_set for what a fresh one may do.
            try:
                fresh = await poll_once(resolver, lookup, lookup.query_timeout)
            except DnsQueryError:
                return current[0]
            candidate = snapshot((*fresh, me)) if fresh else ()
            current[0] = next_set(current[0], candidate, lookup.expected_count)
            self.state.peers = current[0]
            return current[0]

        agreed, outcome = await reach_agreement(
            refresh,
            self.settings.probe.api_port,
            me,
            interval=lookup.poll_interval,
            remaining=lambda: max(
                constraints.remaining(time.monotonic() - started),
                agreement_deadline - time.monotonic(),
            ),
        )
        self.state.agreement = outcome.describe()
        if outcome.complete:
            log.info(
                "all %d peers agree on the peer set",
                len(agreed),
                extra={"event": "agreement", "peers": len(agreed), "agreed": True},
            )
            return agreed
        if lookup.fail_on_timeout:
            log.error("no H2O started: the peers did not agree in time: %s", outcome.describe())
            return exit_codes.LOOKUP_FAILED
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
            kind = event.error.kind
            self.state.dns_errors[kind] = self.state.dns_errors.get(kind, 0) + 1
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

    async def _supervise(self) -> int:
        from h2o_k8s_discovery.cloud.watch import watch_node  # noqa: PLC0415 - see run()

        watching = asyncio.create_task(
            watch_node(self.state, self.access, context_path=self.h2o_args.context_path),
            name="watch-node",
        )
        deadline = asyncio.create_task(self._formation_deadline(), name="formation-deadline")
        try:
            status = await self._jvm_exit(watching)
            if self.shutdown is not None:
                status = await self.shutdown
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
        if self.cloud_lost:
            return exit_codes.CLOUD_LOST
        return exit_codes.LOOKUP_FAILED if self.formation_failed else status

    async def _formation_deadline(self) -> None:
        """Stop H2O when the full cloud has not formed in time (``formation_timeout``)."""
        timeout = self.settings.probe.formation_timeout
        if timeout is None:
            return
        await asyncio.sleep(timeout)
        if self.state.phase is not Phase.FORMING or self.shutdown is not None:
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
        self.formation_failed = True
        self.state.phase = Phase.STOPPING
        grace = self.settings.launch.shutdown_grace
        self.shutdown = asyncio.create_task(self.supervisor.terminate(grace, signal.SIGTERM))

    async def _jvm_exit(self, watching: asyncio.Task[None]) -> int:
        """The JVM's exit status; raises what ended the watcher if it crashed first."""
        jvm = asyncio.create_task(self.supervisor.wait(), name="jvm-exit")
        await asyncio.wait({jvm, watching}, return_when=asyncio.FIRST_COMPLETED)
        error = watching.exception() if watching.done() and not watching.cancelled() else None
        if error is not None:
            jvm.cancel()
            raise error
        return await jvm

    def _on_cloud_damage(self, damage: str) -> None:
        if self.shutdown is not None or not self.supervisor.running:
            return
        grace = self.settings.launch.shutdown_grace
        log.error(
            "H2O cannot heal a damaged cloud (%s): stopping it so the pod restarts "
            "(H2O_EXIT_ON_CLOUD_LOSS)",
            damage,
        )
        self.cloud_lost = True
        self.state.phase = Phase.STOPPING
        self.shutdown = asyncio.create_task(self.supervisor.terminate(grace, signal.SIGTERM))

    def _on_signal(self, signum: signal.Signals) -> None:
        if self.supervisor.running and not self.jvm_waiting:
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
        self.state.phase = Phase.STOPPING
        if self.shutdown is None:
            grace = self.settings.launch.shutdown_grace
            log.info("%s received: stopping H2O, %gs before it is killed", signum.name, grace)
            self.shutdown = asyncio.create_task(self.supervisor.terminate(grace, signum))
        else:
            self.supervisor.forward(signum)

    def _stopped_status(self) -> int:
        signum = self.stop_signal or signal.SIGTERM
        return exit_codes.SIGNAL_BASE + signum

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in FORWARDED_SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in FORWARDED_SIGNALS:
            loop.remove_signal_handler(signum)
