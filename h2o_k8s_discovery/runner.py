"""``run``: the container entrypoint, one function per lifecycle step.

probes up -> lookup -> flatfile -> JVM -> watch the cloud -> JVM exits -> exit with its status.

Signals decide the path: during the lookup, a stop signal ends it at once and no JVM is
started; once the JVM runs, SIGTERM and SIGINT turn readiness off, are forwarded, and after the
grace time the JVM's process group is killed; every other forwarded signal just passes through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping, Sequence

from h2o_k8s_discovery import exit_codes
from h2o_k8s_discovery.cloud import CloudWatcher, cloud_url
from h2o_k8s_discovery.discovery import PollEvent, discover_peers
from h2o_k8s_discovery.errors import FlatfileError, LaunchError, ProbeServerError
from h2o_k8s_discovery.flatfile import write_flatfile
from h2o_k8s_discovery.jvm import check_jar, jvm_command, jvm_environment
from h2o_k8s_discovery.node_state import NodeState, Phase
from h2o_k8s_discovery.peers import Peer
from h2o_k8s_discovery.pod_ip import own_ip, with_self
from h2o_k8s_discovery.probes import ProbeServer
from h2o_k8s_discovery.settings import Settings
from h2o_k8s_discovery.supervisor import FORWARDED_SIGNALS, Supervisor

log = logging.getLogger(__name__)

#: Signals that stop the entrypoint; the others are only passed on to the JVM.
_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT})
#: Once the JVM runs, these begin the graceful shutdown; HUP and QUIT are only forwarded (H2O
#: and the JVM give them their own meaning, e.g. QUIT prints a thread dump).
_SHUTDOWN_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


async def run_entrypoint(
    settings: Settings, extra_args: Sequence[str], env: Mapping[str, str]
) -> int:
    """Run the whole lifecycle; returns the exit status for the container."""
    return await Entrypoint(settings, extra_args, env).run()


class Entrypoint:
    """One pod's lifecycle; owns the node state, the JVM's supervisor and the probe server."""

    def __init__(
        self, settings: Settings, extra_args: Sequence[str], env: Mapping[str, str]
    ) -> None:
        self.settings = settings
        self.extra_args = tuple(extra_args)
        self.env = env
        self.state = NodeState(ready_until_formed=settings.probe.ready_until_formed)
        self.supervisor = Supervisor()
        self.server = ProbeServer(self.state, settings.probe.api_port)
        self.stop_signal: signal.Signals | None = None
        self.stopped = asyncio.Event()
        self.shutdown: asyncio.Task[int] | None = None

    async def run(self) -> int:
        try:
            await self.server.start()
        except ProbeServerError as err:
            log.error("%s", err)
            return exit_codes.PORT_IN_USE
        self.supervisor.start()
        self._install_signal_handlers()
        try:
            return await self._lifecycle()
        finally:
            self._remove_signal_handlers()
            await self.server.stop()
            self.supervisor.close()

    async def _lifecycle(self) -> int:
        peers = await self._look_up()
        if peers is None:
            return self._stopped_status()
        flatfile = self.settings.launch.flatfile
        try:
            write_flatfile(flatfile, peers)
        except FlatfileError as err:
            log.error("%s", err)
            return exit_codes.FLATFILE
        log.info(
            "flatfile %s lists %d peer(s): %s", flatfile, len(peers), " ".join(map(str, peers))
        )
        try:
            self._launch()
        except LaunchError as err:
            log.error("%s", err)
            return err.exit_status
        return await self._supervise()

    async def _look_up(self) -> tuple[Peer, ...] | None:
        """The peers to write, this node included; ``None`` when a signal ended the lookup."""
        lookup = asyncio.create_task(
            discover_peers(self.settings.lookup, on_poll=self._on_poll), name="lookup"
        )
        stopped = asyncio.create_task(self.stopped.wait(), name="stop-signal")
        await asyncio.wait({lookup, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not lookup.done():
            lookup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lookup
            return None
        result = lookup.result()
        ip = own_ip(self.settings.launch.pod_ip, result.peers)
        me = Peer(ip, self._own_port())
        self.state.self_peer = me
        self.state.peers = with_self(result.peers, me)
        return self.state.peers

    def _own_port(self) -> int:
        return self.settings.lookup.h2o_port

    def _on_poll(self, event: PollEvent) -> None:
        if event.error is not None:
            self.state.last_dns_error = str(event.error)
        elif event.peers is not None:
            self.state.peers = event.peers

    def _launch(self) -> None:
        launch = self.settings.launch
        me = self.state.self_peer
        assert me is not None  # noqa: S101 - set by the lookup
        check_jar(launch.jar)
        argv = jvm_command(
            launch,
            flatfile=launch.flatfile,
            port=me.port,
            own_ip=me.ip,
            extra_args=self.extra_args,
        )
        self.state.phase = Phase.LAUNCHING
        log.info("launching H2O: %s", " ".join(argv))
        self.state.jvm_pid = self.supervisor.spawn(argv, jvm_environment(self.env))
        self.state.phase = Phase.FORMING

    async def _supervise(self) -> int:
        me = self.state.self_peer
        assert me is not None  # noqa: S101 - set by the lookup
        watcher = CloudWatcher(
            cloud_url(str(me.ip), me.port),
            self.state.observe_cloud,
            is_formed=lambda: self.state.phase is Phase.FORMED,
        )
        watching = asyncio.create_task(watcher.run(), name="cloud-watcher")
        try:
            status = await self.supervisor.wait()
            if self.shutdown is not None:
                status = await self.shutdown
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        self.state.phase = Phase.EXITED
        self.state.exit_status = status
        return status

    def _on_signal(self, signum: signal.Signals) -> None:
        if self.supervisor.running:
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
