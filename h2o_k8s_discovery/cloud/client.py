"""Reading the local H2O node's ``GET /3/Cloud`` over HTTP or HTTPS, once or as a watcher.

The parsing and the rules live in ``cloud``; this is only the polling, so that modules that
hold a ``CloudStatus`` do not import the HTTP client. A node that does not answer yet (refused,
timed out) is normal while H2O starts and stays at DEBUG; a node that answers but cannot be
read because of its REST security (401, 403, a certificate not trusted) will not get better by
itself, so that is a *problem*: logged once at ERROR with what to fix, and reported to the owner
(``/status``, and readiness stays off).
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import aiohttp

from h2o_k8s_discovery.cloud.status import CloudStatus
from h2o_k8s_discovery.config.rest_security import RestAccess

log = logging.getLogger(__name__)

_PLAIN = RestAccess()


@dataclass(frozen=True, slots=True)
class CloudAnswer:
    """One ``GET /3/Cloud``: the status, or why a node that answered could not be read."""

    status: CloudStatus | None = None
    #: A 401, a 403 or a TLS failure, with what to fix; ``None`` otherwise.
    problem: str | None = None
    #: The connection was refused: nothing listens on the node's port (evidence of its death).
    refused: bool = False


async def fetch_cloud_status(session: aiohttp.ClientSession, url: str) -> CloudStatus | None:
    """One ``GET /3/Cloud``; ``None`` while the node does not answer or answers oddly."""
    return (await fetch_cloud(session, url)).status


async def fetch_cloud(
    session: aiohttp.ClientSession, url: str, access: RestAccess = _PLAIN
) -> CloudAnswer:
    """One ``GET /3/Cloud`` with ``session`` (which carries ``access``'s auth and TLS)."""
    try:
        async with session.get(url) as response:
            return await _read(response, url, access)
    except aiohttp.ClientConnectorCertificateError as err:
        return CloudAnswer(problem=_untrusted(url, access, err))
    except aiohttp.ClientSSLError as err:
        return CloudAnswer(problem=f"TLS with {_origin(url)} failed ({err}): {_TLS_FIX}")
    except aiohttp.ClientConnectorError as err:
        log.debug("%s: %s", url, err)
        return CloudAnswer(refused=err.os_error.errno == errno.ECONNREFUSED)
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        log.debug("%s: %s", url, err or type(err).__name__)
        return CloudAnswer()


async def _read(response: aiohttp.ClientResponse, url: str, access: RestAccess) -> CloudAnswer:
    if response.status in (401, 403):
        return CloudAnswer(problem=_refused(response.status, url, access))
    if response.status != 200:
        log.debug("%s answered %d", url, response.status)
        return CloudAnswer()
    return CloudAnswer(CloudStatus.parse(await response.json(content_type=None)))


_TLS_FIX = (
    "H2O serves HTTPS with the keystore of -jks; H2O_REST_CA_FILE must hold the CA that "
    "signed its certificate"
)


def _refused(status: int, url: str, access: RestAccess) -> str:
    origin = _origin(url)
    if status == 403:
        return (
            f"H2O at {origin} answered 403 Forbidden to user {access.user!r}: H2O's login "
            "service knows the user but does not let it call the REST API; give it H2O's "
            "role in -login_conf, or use another H2O_REST_USER"
        )
    if access.user is None:
        return (
            f"H2O at {origin} answered 401 Unauthorized: it runs a login service (-hash_login, "
            "-ldap_login, ...); set H2O_REST_USER and H2O_REST_PASSWORD_FILE to a user of it"
        )
    return (
        f"H2O at {origin} answered 401 Unauthorized to user {access.user!r}: its login "
        "service refused the user or the password; check H2O_REST_USER and the file "
        "H2O_REST_PASSWORD_FILE names against -login_conf"
    )


def _untrusted(url: str, access: RestAccess, err: aiohttp.ClientConnectorCertificateError) -> str:
    origin, host = _origin(url), urlsplit(url).hostname
    reason = getattr(err.certificate_error, "verify_message", None) or str(err.certificate_error)
    name_hint = (
        f", and its certificate must name {host} (an IP SAN, keytool -ext SAN=ip:{host}) or "
        "H2O_REST_TLS_CHECK_HOSTNAME=false"
        if access.check_hostname
        else ""
    )
    return (
        f"H2O's certificate at {origin} is not trusted ({reason}): H2O_REST_CA_FILE must hold "
        f"the CA that signed it{name_hint}"
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


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
        access: RestAccess = _PLAIN,
        on_problem: Callable[[str | None], None] | None = None,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.on_status = on_status
        self.forming_interval = forming_interval
        self.formed_interval = formed_interval
        self.is_formed = is_formed
        self.access = access
        self.on_problem = on_problem
        #: Called when the node's port refused the connection: nothing listens there.
        self.on_refused = on_refused
        self.problem: str | None = None

    async def run(self) -> None:
        """Poll until cancelled."""
        # A node that does not answer within 2 s counts as not answering this time.
        timeout = aiohttp.ClientTimeout(total=2.0)
        context = self.access.ssl_context()
        connector = None if context is None else aiohttp.TCPConnector(ssl=context)
        async with aiohttp.ClientSession(
            timeout=timeout, headers=self.access.headers(), connector=connector
        ) as session:
            while True:
                answer = await fetch_cloud(session, self.url, self.access)
                self._report(answer)
                if answer.refused and self.on_refused is not None:
                    self.on_refused()
                self.on_status(answer.status)
                formed = self.is_formed()
                await asyncio.sleep(self.formed_interval if formed else self.forming_interval)

    def _report(self, answer: CloudAnswer) -> None:
        """Log a problem once when it starts (not on every poll), and when it is over."""
        if answer.problem == self.problem or (answer.problem is None and answer.status is None):
            # No answer at all says nothing about a problem seen before: keep it.
            return
        if answer.problem is not None:
            log.error("%s", answer.problem, extra={"event": "rest-problem"})
        else:
            log.info("H2O's REST API at %s answers again", _origin(self.url))
        self.problem = answer.problem
        if self.on_problem is not None:
            self.on_problem(answer.problem)


def cloud_url(host: str, port: int, context_path: str = "", scheme: str = "http") -> str:
    """The ``/3/Cloud`` URL of the node at ``host`` (an IP literal) and ``port``, its REST API
    under ``context_path`` (H2O's ``-context_path``: ``""`` or ``/path``)."""
    bracketed = f"[{host}]" if ":" in host else host
    return f"{scheme}://{bracketed}:{port}{quote(context_path)}/3/Cloud?skip_ticks=true"
