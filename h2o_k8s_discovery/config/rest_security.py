"""Reaching an H2O that secures its REST API: basic auth, HTTPS, and what H2O's arguments say.

Users who secure H2O start it with a login service (``-hash_login``, ``-ldap_login``,
``-pam_login``, ``-kerberos_login``, ``-spnego_login``, each with ``-login_conf FILE``) and serve
the API over HTTPS (``-jks FILE``). The watcher's ``GET /3/Cloud`` then needs credentials and a
certificate to trust, or it gets 401 or a TLS error and the pod is never Ready.

Decisions. The password comes from a file (a mounted Secret), read once at start: never from
the environment, which ``kubectl describe`` and ``/proc/<pid>/environ`` show. Whether the API is
HTTPS follows from ``-jks`` among the jar's arguments, and then ``H2O_REST_CA_FILE`` is required:
``run`` refuses a pairing that could never work (``-jks`` without a CA, a CA without ``-jks``, a
login option without credentials) with exit 2 instead of a pod that is never Ready. ``sidecar``
does not see H2O's arguments, so there a CA file alone means HTTPS. The certificate's chain is
always checked against the CA file; its name is checked against the address called (the pod's
own IP, so the certificate needs an IP SAN) unless ``H2O_REST_TLS_CHECK_HOSTNAME=false``.
``ssl`` is imported only here and only when HTTPS is in use, so the plain case keeps OpenSSL
out of the process (``footprint.py``).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from h2o_k8s_discovery.config.settings import RestSettings
from h2o_k8s_discovery.errors import ConfigError

if TYPE_CHECKING:
    import ssl

#: H2O's options that put a login service in front of every REST call.
LOGIN_OPTIONS = ("-hash_login", "-ldap_login", "-pam_login", "-kerberos_login", "-spnego_login")
#: The keystore password H2O uses when ``-jks_pass`` is not given.
H2O_DEFAULT_JKS_PASS = "h2oh2o"  # noqa: S105 - H2O's documented public default
#: A password file larger than this is not a password (a keystore mounted by mistake, say).
_MAX_PASSWORD_BYTES = 4096


@dataclass(frozen=True, slots=True)
class H2OSecurityArgs:
    """What the h2o.jar arguments say about H2O's own REST security."""

    #: The login option given (``-hash_login``, ...), or ``None``.
    login: str | None = None
    #: ``-jks FILE``: H2O serves its API over HTTPS with this keystore.
    jks: str | None = None
    #: Whether ``-jks_pass`` is on the command line (where H2O logs it).
    jks_pass_given: bool = False


def parse_h2o_args(args: Sequence[str]) -> H2OSecurityArgs:
    """The security options among ``args``; H2O's parser takes the word after a valued one."""
    login: str | None = None
    jks: str | None = None
    jks_pass_given = False
    words = iter(args)
    for word in words:
        if word in LOGIN_OPTIONS:
            login = word
        elif word == "-jks":
            jks = next(words, None)
        elif word == "-jks_pass":
            jks_pass_given = True
            next(words, None)
    return H2OSecurityArgs(login=login, jks=jks, jks_pass_given=jks_pass_given)


@dataclass(frozen=True, slots=True)
class RestAccess:
    """How to call the local H2O node's REST API: scheme, credentials, trust."""

    https: bool = False
    user: str | None = None
    #: Kept out of ``repr`` so that no log line or traceback can show it.
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    check_hostname: bool = True

    @property
    def scheme(self) -> str:
        return "https" if self.https else "http"

    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header for basic auth, or nothing."""
        if self.user is None or self.password is None:
            return {}
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for HTTPS (trusting only ``ca_file``), ``None`` for plain HTTP.

        Raises ``ConfigError`` naming ``H2O_REST_CA_FILE`` when the file holds no certificate.
        """
        if not self.https or self.ca_file is None:
            return None
        import ssl  # noqa: PLC0415 - only when HTTPS is in use, see the module docstring

        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.check_hostname = self.check_hostname
        try:
            context.load_verify_locations(cafile=str(self.ca_file))
        except (OSError, ssl.SSLError, ValueError) as err:
            raise ConfigError(
                [
                    f"H2O_REST_CA_FILE={str(self.ca_file)!r}: cannot load PEM certificates "
                    f"from it ({err}): give the CA certificate that signed H2O's keystore"
                ]
            ) from None
        return context


def load_rest_access(rest: RestSettings, h2o_args: Sequence[str] | None) -> RestAccess:
    """Read the password file and decide HTTPS; ``ConfigError`` listing every problem.

    ``h2o_args`` are the jar's arguments (``run``), or ``None`` when they are not known here
    (``sidecar``): then a CA file alone means HTTPS and nothing is cross-checked.
    """
    problems: list[str] = []
    password = _credentials(rest, problems)
    https = rest.ca_file is not None
    if h2o_args is not None:
        _check_against_args(rest, parse_h2o_args(h2o_args), problems)
    if rest.ca_file is not None and not _readable(rest.ca_file):
        problems.append(
            f"H2O_REST_CA_FILE={str(rest.ca_file)!r}: not a readable file: mount the PEM "
            "certificate of the CA that signed H2O's keystore there"
        )
    if problems:
        raise ConfigError(problems)
    access = RestAccess(
        https=https,
        user=rest.user,
        password=password,
        ca_file=rest.ca_file,
        check_hostname=rest.check_hostname,
    )
    access.ssl_context()  # a CA file without certificates is an error now, not per request
    return access


def read_secret_file(variable: str, path: Path) -> str:
    """The text of a one-line secret file, one trailing newline dropped; ``ConfigError``."""
    try:
        with path.open("rb") as file:
            raw = file.read(_MAX_PASSWORD_BYTES + 1)
    except OSError as err:
        raise ConfigError(
            [
                f"{variable}={str(path)!r}: cannot read it ({err.strerror}): mount the "
                "Secret holding the password there"
            ]
        ) from None
    if len(raw) > _MAX_PASSWORD_BYTES:
        raise ConfigError(
            [f"{variable}={str(path)!r}: larger than {_MAX_PASSWORD_BYTES} bytes: not a password"]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{variable}={str(path)!r}: not UTF-8 text"]) from None
    # ``echo pass > file`` and most editors end the file with a newline; the password does not.
    text = text.removesuffix("\n").removesuffix("\r")
    if text == "" or "\n" in text:
        raise ConfigError(
            [f"{variable}={str(path)!r}: expected the password on one line, not empty"]
        )
    return text


def _credentials(rest: RestSettings, problems: list[str]) -> str | None:
    if (rest.user is None) != (rest.password_file is None):
        given, missing = (
            ("H2O_REST_USER", "H2O_REST_PASSWORD_FILE")
            if rest.user is not None
            else ("H2O_REST_PASSWORD_FILE", "H2O_REST_USER")
        )
        problems.append(f"{given} is set but {missing} is not: basic auth needs both")
        return None
    if rest.password_file is None:
        return None
    try:
        return read_secret_file("H2O_REST_PASSWORD_FILE", rest.password_file)
    except ConfigError as err:
        problems.extend(err.problems)
        return None


def _check_against_args(rest: RestSettings, args: H2OSecurityArgs, problems: list[str]) -> None:
    """Pairings that could never work: refused at start rather than a pod never Ready."""
    if args.login is not None and rest.user is None:
        problems.append(
            f"the h2o.jar arguments have {args.login}, so H2O asks every REST call for a login, "
            "but H2O_REST_USER and H2O_REST_PASSWORD_FILE are not set: give a user of that "
            "login service and a file with its password"
        )
    if args.jks is not None and rest.ca_file is None:
        problems.append(
            "the h2o.jar arguments have -jks, so H2O serves HTTPS, but H2O_REST_CA_FILE is not "
            "set: give the PEM certificate of the CA that signed the keystore's certificate"
        )
    if args.jks is None and rest.ca_file is not None:
        problems.append(
            f"H2O_REST_CA_FILE={str(rest.ca_file)!r} is set but the h2o.jar arguments have no "
            "-jks, so H2O serves plain HTTP: add -jks KEYSTORE or unset H2O_REST_CA_FILE"
        )
    if rest.jks_password_file is not None and args.jks is None:
        problems.append(
            f"H2O_JKS_PASSWORD_FILE={str(rest.jks_password_file)!r} is set but the h2o.jar "
            "arguments have no -jks: add -jks KEYSTORE or unset H2O_JKS_PASSWORD_FILE"
        )
    if rest.jks_password_file is not None and args.jks_pass_given:
        problems.append(
            "H2O_JKS_PASSWORD_FILE and -jks_pass are both given: drop -jks_pass (H2O logs its "
            "arguments, the password with them)"
        )


def _readable(path: Path) -> bool:
    try:
        with path.open("rb"):
            return path.is_file()
    except OSError:
        return False
