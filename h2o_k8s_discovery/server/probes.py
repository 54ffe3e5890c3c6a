"""The pod's HTTP server: Kubernetes' probes, ``/status``, ``/peers`` and ``/metrics``.

Every answer is read from the in-memory ``NodeState``; no request does I/O, so a slow or
hostile client cannot delay the kubelet's probe. Routes accept GET only (aiohttp answers 405
to other methods and 404 to other paths), like H2O's own endpoint.
"""

from __future__ import annotations

import errno
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from h2o_k8s_discovery.discovery.agreement import PEERS_PATH
from h2o_k8s_discovery.errors import ProbeServerError
from h2o_k8s_discovery.server.node_state import NodeState

log = logging.getLogger(__name__)

LEADER_PATH = "/kubernetes/isLeaderNode"
HEALTH_PATH = "/healthz"
STATUS_PATH = "/status"
METRICS_PATH = "/metrics"

_STATE_KEY = web.AppKey("state", NodeState)


def make_app(state: NodeState) -> web.Application:
    # Probes carry no body; a small limit stops a client from making us buffer megabytes.
    app = web.Application(client_max_size=4096, middlewares=[_log_server_errors])
    app[_STATE_KEY] = state
    app.router.add_get(LEADER_PATH, _is_leader_node, allow_head=False)
    app.router.add_get(HEALTH_PATH, _healthz, allow_head=False)
    app.router.add_get(STATUS_PATH, _status, allow_head=False)
    app.router.add_get(PEERS_PATH, _peers, allow_head=False)
    app.router.add_get(METRICS_PATH, _metrics, allow_head=False)
    return app


@web.middleware
async def _log_server_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A handler that fails is a bug: log it with its traceback, answer a bare 500.

    Answers of aiohttp's own (404, 405, 413...) are ``HTTPException``s and pass untouched, and
    requests that do not parse never reach a handler: bad requests stay quiet.
    """
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("%s %s failed, answered 500; this is a bug", request.method, request.path)
        return web.Response(status=500, text="internal error\n")


async def _is_leader_node(request: web.Request) -> web.Response:
    return web.Response(status=request.app[_STATE_KEY].readiness(), content_type="text/plain")


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(status=request.app[_STATE_KEY].liveness(), content_type="text/plain")


async def _status(request: web.Request) -> web.Response:
    return web.json_response(request.app[_STATE_KEY].describe())


async def _peers(request: web.Request) -> web.Response:
    return web.json_response(request.app[_STATE_KEY].peer_view())


async def _metrics(request: web.Request) -> web.Response:
    # Imported on the first scrape: prometheus_client costs megabytes a pod never scraped
    # would carry for nothing.
    from h2o_k8s_discovery.server import metrics  # noqa: PLC0415

    body = metrics.render(request.app[_STATE_KEY])
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


class ProbeServer:
    """Serves the probes on every interface, IPv4 and IPv6, at ``port``."""

    def __init__(self, state: NodeState, port: int, host: str | None = None) -> None:
        self.port = port
        self.host = host
        # handle_signals=False: the entrypoint owns signals; shutdown_timeout fits a pod's
        # grace period (aiohttp's default of 60 s does not).
        # keepalive_timeout: an idle connection (or one that never sends a request) is closed
        # after 5 s, so idle clients cannot pile up to the file-descriptor limit and starve
        # the kubelet's probe (aiohttp's default keeps them for an hour).
        self.runner = web.AppRunner(
            make_app(state),
            handle_signals=False,
            shutdown_timeout=1.0,
            access_log=None,
            keepalive_timeout=5.0,
        )

    async def start(self) -> None:
        """Bind the port; raises ``ProbeServerError`` with a clear message when it is taken."""
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as err:
            await self.runner.cleanup()
            if err.errno == errno.EADDRINUSE:
                raise ProbeServerError(
                    f"the probe port {self.port} (H2O_KUBERNETES_API_PORT) is already in use by "
                    "another process; choose a free port"
                ) from err
            raise ProbeServerError(f"cannot serve probes on port {self.port}: {err}") from err
        log.info("serving probes on port %d", self.port)

    async def stop(self) -> None:
        await self.runner.cleanup()
