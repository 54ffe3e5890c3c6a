"""Reading the local H2O node's ``GET /3/Cloud`` over HTTP, once or as a watcher.

The parsing and the rules live in ``cloud``; this is only the polling, so that modules that
hold a ``CloudStatus`` do not import the HTTP client.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable

import aiohttp

from h2o_k8s_discovery.cloud import CloudStatus

log = logging.getLogger(__name__)


async def fetch_cloud_status(
    session: aiohttp.ClientSession, url: str, on_refused: Callable[[], None] | None = None
) -> CloudStatus | None:
    """One ``GET /3/Cloud``; ``None`` while the node does not answer or answers oddly.

    ``on_refused`` is called when the connection was refused: nothing listens on the port.
    """
    try:
        async with session.get(url) as response:
            if response.status != 200:
                log.debug("%s answered %d", url, response.status)
                return None
            return CloudStatus.parse(await response.json(content_type=None))
    except aiohttp.ClientConnectorError as err:
        if err.os_error.errno == errno.ECONNREFUSED and on_refused is not None:
            on_refused()
        log.debug("%s: %s", url, err)
        return None
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        log.debug("%s: %s", url, err or type(err).__name__)
        return None


class CloudWatcher:
    """Polls the local node's ``/3/Cloud``: quickly while the cloud forms, slowly after.

    Each answer (or ``None`` when the node does not answer) goes to ``on_status``; the watcher
    decides nothing itself.
    """

    def __init__(
        self,
        url: str,
        on_status: Callable[[CloudStatus | None], None],
        *,
        forming_interval: float = 0.1,
        formed_interval: float = 0.5,
        is_formed: Callable[[], bool],
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.on_status = on_status
        self.on_refused = on_refused
        self.forming_interval = forming_interval
        self.formed_interval = formed_interval
        self.is_formed = is_formed

    async def run(self) -> None:
        """Poll until cancelled."""
        # A node that does not answer within 2 s counts as not answering this time.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
            while True:
                status = await fetch_cloud_status(session, self.url, self.on_refused)
                self.on_status(status)
                formed = self.is_formed()
                await asyncio.sleep(self.formed_interval if formed else self.forming_interval)


def cloud_url(host: str, port: int) -> str:
    """The ``/3/Cloud`` URL of the node at ``host`` (an IP literal) and ``port``."""
    bracketed = f"[{host}]" if ":" in host else host
    return f"http://{bracketed}:{port}/3/Cloud?skip_ticks=true"
