"""``sidecar``: the probes of ``run`` for a pod whose H2O container is H2O's stock image.

An init container (``discover --write``) has written the flatfile into a shared volume and the
stock image runs ``java -jar h2o.jar -flatfile ...`` by itself. This process launches nothing:
it reads the flatfile to know the cloud's size, watches the local node's ``/3/Cloud`` and
answers the same probes, with the same codes and timing, as ``run`` does, from the same
``NodeState``, ``CloudWatcher`` and ``ProbeServer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from h2o_k8s_discovery import exit_codes
from h2o_k8s_discovery.cloud.watch import watch_node
from h2o_k8s_discovery.config.rest_security import RestAccess
from h2o_k8s_discovery.config.settings import Settings
from h2o_k8s_discovery.discovery.own_address import known_address, own_ip
from h2o_k8s_discovery.errors import ProbeServerError
from h2o_k8s_discovery.flatfile.format import parse_flatfile
from h2o_k8s_discovery.peers import Peer, Snapshot
from h2o_k8s_discovery.server.node_state import NodeState, Phase
from h2o_k8s_discovery.server.probes import ProbeServer

log = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: Seconds between two looks for a flatfile that is not there yet.
_FLATFILE_POLL = 0.5


async def run_sidecar(settings: Settings, access: RestAccess | None = None) -> int:
    """Serve the probes until a stop signal; returns the exit status (0 after SIGTERM).

    ``access``: how to call H2O's REST API when it runs a login service or HTTPS.
    """
    state = NodeState(
        ready_until_formed=settings.probe.ready_until_formed,
        loss_timeout=settings.probe.cloud_loss_timeout,
        local_refusal_is_loss=True,
    )
    server = ProbeServer(state, settings.probe.api_port)
    try:
        await server.start()
    except ProbeServerError as err:
        log.error("%s", err)
        return exit_codes.PORT_IN_USE
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stopped.set)
    watching = asyncio.create_task(_watch(settings, state, access), name="sidecar-watch")
    stop = asyncio.create_task(stopped.wait(), name="sidecar-stop")
    try:
        await asyncio.wait({watching, stop}, return_when=asyncio.FIRST_COMPLETED)
        if watching.done():
            # The watcher runs until cancelled: ending by itself is a bug, and readiness would
            # be stuck from then on. Say so with the traceback and let the kubelet restart us.
            log.error(
                "unexpected error: the sidecar stops; this is a bug", exc_info=_error_of(watching)
            )
            return exit_codes.FAILURE
        log.info("stop signal received: the sidecar stops")
        state.phase = Phase.STOPPING
    finally:
        stop.cancel()
        if not watching.done():
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        await server.stop()
    return exit_codes.OK


def _error_of(task: asyncio.Task[None]) -> BaseException | None:
    return None if task.cancelled() else task.exception()


async def _watch(settings: Settings, state: NodeState, access: RestAccess | None) -> None:
    peers = await _read_flatfile(settings)
    me = Peer(own_ip(known_address(settings.launch.pod_ip).ip, peers), settings.lookup.h2o_port)
    if me not in peers:
        log.warning("this pod (%s) is not in the flatfile; H2O will not form with it", me)
    state.peers, state.self_peer, state.phase = peers, me, Phase.FORMING
    log.info("watching %s for a cloud of %d", me, len(peers))
    await watch_node(state, access)


async def _read_flatfile(settings: Settings) -> Snapshot:
    """The flatfile's peers, waiting for the file if the init container has not written it."""
    path = settings.launch.flatfile
    said = False
    while True:
        try:
            return parse_flatfile(path.read_text(encoding="ascii"))
        except FileNotFoundError:
            if not said:
                log.warning("waiting for the flatfile %s (written by discover --write)", path)
                said = True
        except (OSError, UnicodeDecodeError, ValueError) as err:
            log.error("cannot use the flatfile %s: %s; trying again", path, err)
        await asyncio.sleep(_FLATFILE_POLL)
