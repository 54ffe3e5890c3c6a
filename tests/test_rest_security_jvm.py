"""The watcher against a real H2O that secures its REST API: ``-hash_login`` and ``-jks``.

One H2O JVM on loopback serves HTTPS with a keystore made by keytool (its certificate names
127.0.0.1) and asks for a login from a hash realm. The keystore has a password of its own, and
H2O gets it the way ``run`` gives it: as a private copy under H2O's default password
(``jvm/keystore.py``), so no ``-jks_pass`` is on its command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from h2o_k8s_discovery.cloud.client import CloudWatcher, cloud_url
from h2o_k8s_discovery.cloud.status import CloudStatus
from h2o_k8s_discovery.config.rest_security import RestAccess
from h2o_k8s_discovery.jvm.jar import ensure_h2o_jar
from h2o_k8s_discovery.jvm.keystore import with_private_keystore
from h2o_k8s_discovery.peers import Peer
from h2o_k8s_discovery.server.node_state import UNAVAILABLE, NodeState, Phase
from k8s_sim.h2o_jvm import BareH2O
from tests.support.tls_material import (
    Keystore,
    make_keystore,
    make_realm,
    new_password,
    secret_file,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

USER = "watcher"


class SecuredH2O(BareH2O):
    """A bare H2O node with extra h2o.jar arguments."""

    def __init__(self, jar: Path, workdir: Path, h2o_args: list[str]) -> None:
        super().__init__(jar, workdir)
        self.h2o_args = h2o_args

    def command(self) -> list[str]:
        return [*super().command(), *self.h2o_args]


@dataclass
class Secured:
    h2o: SecuredH2O
    keystore: Keystore
    password: str
    other_ca: Path
    workdir: Path

    def access(self, **changes: object) -> RestAccess:
        fields: dict[str, object] = {
            "https": True,
            "user": USER,
            "password": self.password,
            "ca_file": self.keystore.ca_pem,
            "check_hostname": True,
        }
        fields.update(changes)
        return RestAccess(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    workdir = tmp_path_factory.mktemp("secured-h2o")
    store_password = new_password()
    keystore = make_keystore(workdir / "tls", "h2o", ["127.0.0.1"], password=store_password)
    other = make_keystore(workdir / "tls", "other", ["127.0.0.1"])
    password = new_password()
    realm = make_realm(workdir, USER, password)
    store_password_file = secret_file(workdir, "jks-password", store_password)
    args = with_private_keystore(
        ["-hash_login", "-login_conf", str(realm), "-jks", str(keystore.path)],
        store_password_file,
        workdir / "private",
    )
    with SecuredH2O(ensure_h2o_jar(progress=False), workdir, args) as h2o:
        yield Secured(h2o, keystore, password, other.ca_pem, workdir)


async def watch_for(
    access: RestAccess, state: NodeState, seconds: float, host: str, port: int
) -> list[CloudStatus | None]:
    """Run a watcher on ``state`` until it reads a status or reports a problem (at most
    ``seconds``); its answers."""
    seen: list[CloudStatus | None] = []
    settled = asyncio.Event()

    def observe(status: CloudStatus | None) -> None:
        seen.append(status)
        state.observe_cloud(status)
        if status is not None:
            settled.set()

    def on_problem(problem: str | None) -> None:
        state.observe_rest_problem(problem)
        if problem is not None:
            settled.set()

    watcher = CloudWatcher(
        cloud_url(host, port, scheme=access.scheme),
        observe,
        is_formed=lambda: False,
        access=access,
        on_problem=on_problem,
        forming_interval=0.05,
    )
    task = asyncio.create_task(watcher.run())
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(settled.wait(), seconds)
        # A few more polls: a problem must not be logged again on each of them.
        await asyncio.sleep(0.5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return seen


def forming(port: int) -> NodeState:
    state = NodeState(phase=Phase.FORMING)
    state.peers = (Peer.parse("127.0.0.1", port),)
    state.self_peer = state.peers[0]
    return state


async def until_h2o_answers(secured: Secured) -> None:
    """Wait (up to 120 s) until the JVM's API answers the right credentials."""
    state = forming(secured.h2o.port)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert secured.h2o.alive, secured.h2o.log_tail()
        if any(await watch_for(secured.access(), state, 2.0, "127.0.0.1", secured.h2o.port)):
            return
    pytest.fail(f"H2O never answered:\n{secured.h2o.log_tail()}")


def rest_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.ERROR and record.name.endswith("cloud.client")
    ]


async def test_the_right_login_and_ca_read_the_cloud(secured: Secured) -> None:
    """With the user, its password and the keystore's CA the watcher reads H2O's cloud."""
    await until_h2o_answers(secured)
    state = forming(secured.h2o.port)
    seen = await watch_for(secured.access(), state, 10.0, "127.0.0.1", secured.h2o.port)
    statuses = [status for status in seen if status is not None]
    assert statuses, "no /3/Cloud answer"
    assert statuses[-1].cloud_size == 1
    assert state.phase is Phase.FORMED
    assert state.rest_problem is None
    assert "-jks_pass" not in secured.h2o.command()


async def test_a_wrong_password_is_one_error_and_not_ready(
    secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused password: one ERROR naming what to fix, /status shows it, readiness 503."""
    await until_h2o_answers(secured)
    state = forming(secured.h2o.port)
    wrong = new_password()
    with caplog.at_level(logging.DEBUG):
        await watch_for(secured.access(password=wrong), state, 20.0, "127.0.0.1", secured.h2o.port)
    errors = rest_errors(caplog)
    assert len(errors) == 1, errors
    assert "401" in errors[0]
    assert "H2O_REST_PASSWORD_FILE" in errors[0]
    assert state.readiness() == UNAVAILABLE
    assert state.describe()["rest_problem"] == errors[0]
    for text in caplog.text, str(state.describe()):
        assert wrong not in text
        assert secured.password not in text


async def test_no_credentials_says_to_set_them(
    secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    """A watcher without credentials is told that H2O runs a login service."""
    await until_h2o_answers(secured)
    state = forming(secured.h2o.port)
    with caplog.at_level(logging.ERROR):
        await watch_for(
            secured.access(user=None, password=None), state, 20.0, "127.0.0.1", secured.h2o.port
        )
    errors = rest_errors(caplog)
    assert len(errors) == 1, errors
    assert "H2O_REST_USER" in errors[0]
    assert state.readiness() == UNAVAILABLE


#: Python 3.11's asyncio leaves the socket of a TLS connection that the test's cancellation
#: interrupts mid-handshake to the garbage collector; the watcher is only cancelled at shutdown.
UNCLOSED_HANDSHAKE = pytest.mark.filterwarnings(
    "ignore:Exception ignored in.*socket.socket:pytest.PytestUnraisableExceptionWarning"
)


@UNCLOSED_HANDSHAKE
async def test_a_wrong_ca_is_one_error_and_not_ready(
    secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    """H2O's certificate checked against another CA: one ERROR naming H2O_REST_CA_FILE."""
    await until_h2o_answers(secured)
    state = forming(secured.h2o.port)
    access = secured.access(ca_file=secured.other_ca)
    with caplog.at_level(logging.ERROR):
        seen = await watch_for(access, state, 20.0, "127.0.0.1", secured.h2o.port)
    errors = rest_errors(caplog)
    assert len(errors) == 1, errors
    assert "not trusted" in errors[0]
    assert "H2O_REST_CA_FILE" in errors[0]
    assert not any(seen)
    assert state.readiness() == UNAVAILABLE
    assert state.describe()["rest_problem"] == errors[0]


@UNCLOSED_HANDSHAKE
async def test_the_certificate_must_name_the_address_called(
    secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    """Called by a name its certificate lacks, H2O is refused, unless the check is off."""
    await until_h2o_answers(secured)
    state = forming(secured.h2o.port)
    with caplog.at_level(logging.ERROR):
        refused = await watch_for(secured.access(), state, 20.0, "localhost", secured.h2o.port)
    assert not any(refused)
    errors = rest_errors(caplog)
    assert len(errors) == 1, errors
    assert "H2O_REST_TLS_CHECK_HOSTNAME" in errors[0]
    unchecked = secured.access(check_hostname=False)
    state = forming(secured.h2o.port)
    assert any(await watch_for(unchecked, state, 10.0, "localhost", secured.h2o.port))
