"""Settings, read from the environment under H2O's own variable names.

Existing manifests written for H2O's built-in discovery keep working unchanged: the four
``H2O_KUBERNETES_*`` / ``H2O_NODE_*`` variables mean what they mean to H2O. The decision that
differs from H2O: a value H2O would silently ignore (``H2O_NODE_EXPECTED_COUNT=three``) is an
error here, and every problem in the environment is collected into one ``ConfigError`` so a
user fixes them all in one round instead of one per pod restart.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TypeVar

from h2o_k8s_discovery.config.redaction import redacted_text
from h2o_k8s_discovery.errors import ConfigError
from h2o_k8s_discovery.peers import IPAddress

T = TypeVar("T")

#: H2O's default when neither the timeout nor the expected count is set.
DEFAULT_LOOKUP_TIMEOUT = 180.0
#: Seconds between polls while the peers are incomplete (``LookupSettings.poll_interval``).
DEFAULT_POLL_INTERVAL = 0.25

#: Variables that make an h2o.jar >= 3.30 run its own discovery; never pass them to the JVM.
H2O_K8S_VARIABLES = (
    "H2O_KUBERNETES_SERVICE_DNS",
    "H2O_NODE_LOOKUP_TIMEOUT",
    "H2O_NODE_EXPECTED_COUNT",
    "H2O_KUBERNETES_API_PORT",
)

_INTEGER = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
_DNS_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})


class RecordType(Enum):
    """Which DNS records describe the peers."""

    #: A and AAAA records; every peer uses ``H2O_PORT``.
    A = "A"
    #: SRV records; each record carries its peer's port, its target resolves to the address.
    SRV = "SRV"


class IpFamily(Enum):
    """Which address family the peers are looked up in (``H2O_DNS_IP_FAMILY``)."""

    #: The family of this pod's own address (``ip_family.choose_family`` says how it is found).
    AUTO = "auto"
    #: A records only (the targets' A records in SRV mode).
    IPV4 = "ipv4"
    #: AAAA records only.
    IPV6 = "ipv6"

    @classmethod
    def of(cls, ip: IPAddress) -> IpFamily:
        return cls.IPV6 if ip.version == 6 else cls.IPV4


@dataclass(frozen=True, slots=True)
class Nameserver:
    """An explicit DNS server, overriding /etc/resolv.conf."""

    ip: IPAddress
    port: int = 53

    def __str__(self) -> str:
        host = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class LookupSettings:
    """How peers are found in DNS and when the lookup is over."""

    #: The headless Service's DNS name, queried as an absolute name (no search list).
    service_dns: str
    #: Seconds before the lookup ends with what it has; ``None``: no deadline (H2O's rule when
    #: only the expected count is set).
    timeout: float | None = DEFAULT_LOOKUP_TIMEOUT
    #: The lookup ends as soon as exactly this many peers are published; ``None``: not used.
    expected_count: int | None = None
    #: The H2O port written into the flatfile for A/AAAA peers (SRV records carry their own).
    h2o_port: int = 54321
    #: Seconds between two polls while the peer set is incomplete (and the first backoff step
    #: after an error). A quarter second, not H2O's one: behind a Service without
    #: ``publishNotReadyAddresses`` pods appear in DNS only as they turn Ready, and the wait
    #: for the next poll is then on every pod's path to a cloud; four queries a second per
    #: pod, for the seconds a lookup lasts, are nothing to a cluster DNS.
    poll_interval: float = DEFAULT_POLL_INTERVAL
    record_type: RecordType = RecordType.A
    #: Only this family's address records are asked for and kept, so a pod of a dual-stack
    #: Service (an A and an AAAA record each) is one peer, not two. ``AUTO`` is settled from
    #: ``POD_IP`` by ``Settings.from_env``, else when the lookup starts.
    ip_family: IpFamily = IpFamily.AUTO
    #: Why ``ip_family`` is what it is, for the log.
    ip_family_reason: str = "H2O_DNS_IP_FAMILY"
    #: ``None``: the servers of /etc/resolv.conf.
    nameserver: Nameserver | None = None
    #: Seconds one query may take, retries inside dnspython included (Akka's resolve-timeout).
    query_timeout: float = 3.0
    #: Upper bound, in seconds, of the backoff between polls after DNS errors.
    backoff_max: float = 15.0
    #: Seconds the peer set must stay unchanged before the expected count ends the lookup
    #: (Akka's stable-margin); 0 ends it on the first poll that matches, as H2O does.
    stable_period: float = 0.0
    #: A lookup that times out without exactly the expected count is an error: no JVM, no
    #: flatfile. ``False`` starts with what was found, as H2O does (a smaller cloud).
    fail_on_timeout: bool = True
    #: Before launch, ask every peer's ``/peers`` and go on only once all report this set.
    agreement: bool = True
    #: Seconds the peers may take to agree after the lookup ended, when the lookup's own
    #: deadline leaves less (a lookup that ends at its timeout still gets this long).
    agreement_timeout: float = 30.0

    @property
    def absolute_name(self) -> str:
        """The name with a trailing dot, so no resolver appends a search domain to it."""
        return self.service_dns if self.service_dns.endswith(".") else self.service_dns + "."


@dataclass(frozen=True, slots=True)
class LaunchSettings:
    """How the H2O JVM is started by ``run``."""

    jar: Path = Path("/opt/h2o/h2o.jar")
    java_opts: tuple[str, ...] = ("-XX:+UseContainerSupport", "-XX:MaxRAMPercentage=50")
    #: ``-name``: nodes only join a cloud of the same name.
    cloud_name: str | None = None
    #: Where the flatfile is written; under /tmp so a read-only root filesystem works.
    flatfile: Path = Path("/tmp/h2o/flatfile.txt")  # noqa: S108 - a fixed, documented path
    #: Seconds between forwarding SIGTERM and killing the JVM's process group. The default fits
    #: ``terminationGracePeriodSeconds: 10`` with two seconds to spare for the entrypoint.
    shutdown_grace: float = 8.0
    #: This pod's IP (downward API ``POD_IP``); ``None``: detected from the interfaces.
    pod_ip: IPAddress | None = None
    #: The JVM start-up cache (``prepare-jvm``); ``None``: off. Defaults to ``<jar>.startup``.
    startup_cache: Path | None = Path("/opt/h2o/h2o.jar.startup")
    #: Whether ``startup_cache`` was set by the user (a missing one is then a warning).
    startup_cache_explicit: bool = False
    #: Start the JVM at once, waiting on a named pipe as its flatfile until the peers are known,
    #: so it boots while the lookup runs. Needs this pod's address before the lookup (``POD_IP``
    #: or kubelet's /etc/hosts line): the JVM's ``-ip`` is fixed at start. ``None`` (auto):
    #: whenever that address is known.
    early_start: bool | None = None


#: ``ProbeSettings.formation_timeout``'s default (typed, so that the parser may give ``None``).
_DEFAULT_FORMATION_TIMEOUT: float | None = 300.0


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """The HTTP server that answers Kubernetes' probes."""

    api_port: int = 8080
    #: Answer 200 on ``/kubernetes/isLeaderNode`` until the cloud has formed (H2O's behaviour,
    #: needed when the headless Service does not publish not-ready addresses); ``False``: 503.
    ready_until_formed: bool = True
    #: Once formed, a cloud that lost a member (on evidence, see ``cloud_loss_timeout``) stops
    #: H2O and ends the entrypoint with its own status, so the pod restarts: H2O cannot heal a
    #: cloud, and a restarted member that rejoins it hides the data it lost.
    exit_on_cloud_loss: bool = True
    #: Seconds of silence (a member's H2O port that does not accept connections, the local
    #: node's ``/3/Cloud`` that does not answer) after which a formed cloud counts as lost. A
    #: refused connection needs no wait: nothing listens there. The default is H2O's own:
    #: ``H2ONode.isHealthy`` is ``now - _last_heard_from < HeartBeatThread.TIMEOUT`` (60000 ms,
    #: heartbeats every second), so H2O itself gives a node 60 s before it calls it unhealthy;
    #: anything shorter would end clouds that H2O keeps, e.g. through a long GC pause.
    cloud_loss_timeout: float = 60.0
    #: Seconds from giving the JVM its peers until the full cloud must have formed, else H2O is
    #: stopped and ``run`` exits 69 so the pod restarts; ``None`` (0): no deadline. H2O never
    #: takes a node in once a smaller cloud has formed (a jar of another build turned away, a
    #: node that came too late), and those nodes would wait, not Ready, until replaced. Normal
    #: formation takes seconds (under 2 minutes on an overloaded 2-core machine): 300 s leaves
    #: room for slow starts.
    formation_timeout: float | None = _DEFAULT_FORMATION_TIMEOUT


@dataclass(frozen=True, slots=True)
class RestSettings:
    """How the watcher reaches an H2O that secures its REST API (``rest_security.py``).

    Only paths here: the files are read once at start, by ``load_rest_access``, so a missing
    Secret is an exit 2 before anything starts and a password never sits in the environment.
    """

    #: Basic-auth user for H2O's login service (``-hash_login``, ``-ldap_login``, ...).
    user: str | None = None
    #: File holding that user's password (a mounted Secret); one trailing newline is dropped.
    password_file: Path | None = None
    #: PEM certificate(s) to trust for H2O's HTTPS (``-jks``); set when the API is HTTPS.
    ca_file: Path | None = None
    #: Check that H2O's certificate names the address called (an IP SAN); the chain is checked
    #: against ``ca_file`` either way.
    check_hostname: bool = True
    #: File holding the password of the keystore given with ``-jks``: ``run`` then hands H2O a
    #: private copy under H2O's default password instead, so no password is on its command
    #: line (H2O logs its arguments).
    jks_password_file: Path | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the entrypoint needs, validated."""

    lookup: LookupSettings
    launch: LaunchSettings = field(default_factory=LaunchSettings)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    rest: RestSettings = field(default_factory=RestSettings)
    #: The entrypoint's own log level (H2O's log level is its ``-log_level`` argument).
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read and validate every setting; raises ``ConfigError`` listing all problems."""
        reader = _EnvReader(env)
        lookup = _read_lookup(reader)
        launch = _read_launch(reader)
        probe = ProbeSettings(
            api_port=reader.get("H2O_KUBERNETES_API_PORT", 8080, _port),
            ready_until_formed=reader.get("H2O_READY_UNTIL_FORMED", True, _boolean),
            exit_on_cloud_loss=reader.get("H2O_EXIT_ON_CLOUD_LOSS", True, _boolean),
            cloud_loss_timeout=reader.get("H2O_CLOUD_LOSS_TIMEOUT", 60.0, _seconds(1, 3600)),
            formation_timeout=reader.get(
                "H2O_CLOUD_FORMATION_TIMEOUT",
                _DEFAULT_FORMATION_TIMEOUT,
                _seconds_or_none(0, 86400),
            ),
        )
        log_level = reader.get("H2O_DISCOVERY_LOG_LEVEL", "INFO", _log_level)
        lookup = _settle_ip_family(reader, lookup, launch.pod_ip)
        rest = _read_rest(reader)
        _check_ports_apart(reader, lookup.h2o_port, probe.api_port)
        if reader.problems:
            raise ConfigError(reader.problems)
        return cls(lookup=lookup, launch=launch, probe=probe, rest=rest, log_level=log_level)


def launch_settings_from_env(env: Mapping[str, str]) -> LaunchSettings:
    """Only the JVM's settings (for ``prepare-jvm``, which needs no Service); ``ConfigError``."""
    reader = _EnvReader(env)
    launch = _read_launch(reader)
    if reader.problems:
        raise ConfigError(reader.problems)
    return launch


def _read_lookup(reader: _EnvReader) -> LookupSettings:
    service_dns = reader.require("H2O_KUBERNETES_SERVICE_DNS", _dns_name)
    timeout = reader.get("H2O_NODE_LOOKUP_TIMEOUT", None, _positive_integer)
    expected = reader.get("H2O_NODE_EXPECTED_COUNT", None, _positive_integer)
    return LookupSettings(
        service_dns=service_dns,
        timeout=_h2o_timeout_rule(timeout, expected),
        expected_count=expected,
        h2o_port=reader.get("H2O_PORT", 54321, _h2o_port),
        poll_interval=reader.get(
            "H2O_DNS_POLL_INTERVAL", DEFAULT_POLL_INTERVAL, _seconds(0.01, 3600)
        ),
        record_type=reader.get("H2O_DNS_RECORD_TYPE", RecordType.A, _record_type),
        ip_family=reader.get("H2O_DNS_IP_FAMILY", IpFamily.AUTO, _ip_family),
        nameserver=reader.get("H2O_DNS_NAMESERVER", None, _nameserver),
        query_timeout=reader.get("H2O_DNS_QUERY_TIMEOUT", 3.0, _seconds(0.1, 60)),
        backoff_max=reader.get("H2O_DNS_BACKOFF_MAX", 15.0, _seconds(0.01, 3600)),
        stable_period=reader.get("H2O_NODE_LOOKUP_STABLE_PERIOD", 0.0, _seconds(0, 3600)),
        fail_on_timeout=reader.get("H2O_NODE_LOOKUP_FAIL_ON_TIMEOUT", True, _boolean),
        agreement=reader.get("H2O_NODE_LOOKUP_AGREEMENT", True, _boolean),
        agreement_timeout=reader.get("H2O_NODE_AGREEMENT_TIMEOUT", 30.0, _seconds(0, 3600)),
    )


def _read_launch(reader: _EnvReader) -> LaunchSettings:
    defaults = LaunchSettings()
    jar = reader.get("H2O_JAR", defaults.jar, _path)
    default_cache: Path | None = default_startup_cache(jar)
    startup_cache = reader.get("H2O_JVM_STARTUP_CACHE", default_cache, _path_or_off)
    return LaunchSettings(
        jar=jar,
        startup_cache=startup_cache,
        startup_cache_explicit="H2O_JVM_STARTUP_CACHE" in reader.env,
        java_opts=reader.get("JAVA_OPTS", defaults.java_opts, _words),
        cloud_name=reader.get("H2O_CLOUD_NAME", None, _cloud_name),
        flatfile=reader.get("H2O_FLATFILE", defaults.flatfile, _path),
        shutdown_grace=reader.get("H2O_SHUTDOWN_GRACE", defaults.shutdown_grace, _seconds(0, 3600)),
        pod_ip=reader.get("POD_IP", None, _ip_address),
        early_start=reader.get("H2O_JVM_EARLY_START", None, _boolean_or_auto),
    )


def _read_rest(reader: _EnvReader) -> RestSettings:
    return RestSettings(
        user=reader.get("H2O_REST_USER", None, _rest_user),
        password_file=reader.get("H2O_REST_PASSWORD_FILE", None, _path),
        ca_file=reader.get("H2O_REST_CA_FILE", None, _path),
        check_hostname=reader.get("H2O_REST_TLS_CHECK_HOSTNAME", True, _boolean),
        jks_password_file=reader.get("H2O_JKS_PASSWORD_FILE", None, _path),
    )


def default_startup_cache(jar: Path) -> Path:
    """The JVM start-up cache that belongs to ``jar``: ``<jar>.startup`` next to it."""
    return jar.parent / (jar.name + ".startup")


def _h2o_timeout_rule(timeout: int | None, expected: int | None) -> float | None:
    """H2O's rule: neither set -> 180 s; only the count set -> no deadline."""
    if timeout is not None:
        return float(timeout)
    if expected is not None:
        return None
    return DEFAULT_LOOKUP_TIMEOUT


def _settle_ip_family(
    reader: _EnvReader, lookup: LookupSettings, pod_ip: IPAddress | None
) -> LookupSettings:
    """``auto`` becomes ``POD_IP``'s family; a family that contradicts ``POD_IP`` is a problem."""
    if pod_ip is None:
        return lookup
    own = IpFamily.of(pod_ip)
    if lookup.ip_family is IpFamily.AUTO:
        return replace(lookup, ip_family=own, ip_family_reason=f"the family of POD_IP={pod_ip}")
    if lookup.ip_family is not own:
        reader.problems.append(
            f"H2O_DNS_IP_FAMILY={reader.env.get('H2O_DNS_IP_FAMILY')!r} contradicts "
            f"POD_IP={pod_ip}, an {own.value} address: this pod would not be among its peers; "
            f"set H2O_DNS_IP_FAMILY={own.value} or auto"
        )
    return lookup


def _check_ports_apart(reader: _EnvReader, h2o_port: int, api_port: int) -> None:
    if api_port in (h2o_port, h2o_port + 1):
        reader.problems.append(
            f"H2O_KUBERNETES_API_PORT={api_port} collides with H2O's ports {h2o_port} and "
            f"{h2o_port + 1} (H2O_PORT and H2O_PORT + 1): choose another API port"
        )


class _EnvReader:
    """Reads variables one by one, turning each parse failure into a recorded problem."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def get(self, name: str, default: T, parse: Callable[[str], T]) -> T:
        raw = self.env.get(name)
        if raw is None:
            return default
        return self._parse(name, raw, default, parse)

    def require(self, name: str, parse: Callable[[str], str]) -> str:
        raw = self.env.get(name)
        if raw is None:
            self.problems.append(
                f"{name} is not set: give the headless Service's DNS name, "
                "e.g. h2o-service.my-namespace.svc.cluster.local"
            )
            return ""
        return self._parse(name, raw, "", parse)

    def _parse(self, name: str, raw: str, default: T, parse: Callable[[str], T]) -> T:
        try:
            return parse(raw)
        except ValueError as err:
            self.problems.append(f"{name}={redacted_text(raw)!r}: {err}")
            return default


def _positive_integer(raw: str) -> int:
    return _integer(raw, 1, 10**9)


def _port(raw: str) -> int:
    return _integer(raw, 1, 65535)


def _h2o_port(raw: str) -> int:
    # H2O also binds port + 1 for its internal traffic.
    return _integer(raw, 1, 65534)


def _integer(raw: str, low: int, high: int) -> int:
    expected = f"expected a whole number from {low} to {high}"
    if not _INTEGER.fullmatch(raw):
        raise ValueError(f"not a whole number; {expected}")
    if len(raw) > 12 or not low <= int(raw) <= high:
        raise ValueError(f"out of range; {expected}")
    return int(raw)


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        expected = f"expected seconds from {low:g} to {high:g}, e.g. 1 or 0.5"
        if not _DECIMAL.fullmatch(raw) or len(raw) > 20:
            raise ValueError(f"not a number of seconds; {expected}")
        value = float(raw)
        if not low <= value <= high:
            raise ValueError(f"out of range; {expected}")
        return value

    return parse


def _seconds_or_none(low: float, high: float) -> Callable[[str], float | None]:
    """Seconds as ``_seconds``; 0 means none (no deadline)."""
    seconds = _seconds(low, high)

    def parse(raw: str) -> float | None:
        value = seconds(raw)
        return value if value > 0 else None

    return parse


def _boolean(raw: str) -> bool:
    # ASCII only: str.lower() would turn look-alike letters into these words.
    word = raw.lower() if raw.isascii() else raw
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError("expected true or false")


def _boolean_or_auto(raw: str) -> bool | None:
    if raw.isascii() and raw.lower() == "auto":
        return None
    try:
        return _boolean(raw)
    except ValueError:
        raise ValueError("expected auto, true or false") from None


def _record_type(raw: str) -> RecordType:
    try:
        return RecordType(raw.upper() if raw.isascii() else raw)
    except ValueError:
        raise ValueError("expected A (A and AAAA records) or SRV") from None


def _ip_family(raw: str) -> IpFamily:
    try:
        return IpFamily(raw.lower() if raw.isascii() else raw)
    except ValueError:
        raise ValueError(
            "expected auto (the family of this pod's address), ipv4 (A records) or ipv6 "
            "(AAAA records)"
        ) from None


def _dns_name(raw: str) -> str:
    expected = "expected a DNS name such as h2o-service.my-namespace.svc.cluster.local"
    if raw == "":
        raise ValueError(f"empty; {expected}")
    name = raw.removesuffix(".")
    if len(name) > 253:
        raise ValueError(f"longer than 253 characters; {expected}")
    labels = name.split(".")
    bad = [label for label in labels if not _DNS_LABEL.fullmatch(label)]
    if bad:
        raise ValueError(
            f"label {bad[0]!r} is not 1-63 letters, digits, '-' or '_' "
            f"(not starting or ending with '-'); {expected}"
        )
    return raw


def _ip_address(raw: str) -> IPAddress:
    expected = "expected IPv4 or IPv6 without a zone, e.g. 10.42.0.12"
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        raise ValueError(f"not an IP address; {expected}") from None
    if "%" in raw:
        # A zone index (fe80::1%eth0) would end up in the flatfile and in H2O's -ip.
        raise ValueError(f"has a zone index; {expected}")
    return ip


def _nameserver(raw: str) -> Nameserver:
    expected = (
        "expected an IP address with an optional port: 10.96.0.10, 10.96.0.10:53, [fd00::a]:53"
    )
    host, port = raw, "53"
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(expected)
        port = rest[1:] if rest else "53"
    elif raw.count(":") == 1:
        host, port = raw.split(":")
    try:
        return Nameserver(_ip_address(host), _port(port))
    except ValueError as err:
        raise ValueError(f"{err}; {expected}") from None


def _path(raw: str) -> Path:
    if raw == "" or "\x00" in raw:
        raise ValueError("expected a file path")
    return Path(raw)


def _path_or_off(raw: str) -> Path | None:
    if raw.lower() == "off":
        return None
    try:
        return _path(raw)
    except ValueError:
        raise ValueError("expected a directory path, or off") from None


def _words(raw: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(raw))
    except ValueError as err:
        raise ValueError(f"cannot split into words ({err}); check the quoting") from None


def _log_level(raw: str) -> str:
    if not raw.isascii() or raw.upper() not in _LOG_LEVELS:
        raise ValueError("expected one of " + ", ".join(_LOG_LEVELS))
    return raw.upper()


def _rest_user(raw: str) -> str:
    # Basic auth joins user and password with ':', so a user name cannot hold one (RFC 7617).
    if raw == "" or ":" in raw or not raw.isprintable() or len(raw) > 256:
        raise ValueError("expected a user name of 1-256 printable characters without ':'")
    return raw


def _cloud_name(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", raw):
        raise ValueError("expected 1-128 letters, digits, '.', '_' or '-'")
    return raw
