"""Every setting fuzzed: arbitrary strings, unicode, huge and negative numbers, whitespace, empty.

Two layers. In-process, ``Settings.from_env`` gets hundreds of values per variable and must
either accept a value, and then hold it within what the README documents, or raise a
``ConfigError`` naming the variable and the value; never anything else. Through the real
command, ``run`` (forked from a zygote that imported it once, see
tests/support/children/cli_zygote.py, and ``python -m`` for the all-at-once test): an invalid
value exits 2 naming the variable, with no traceback, no port bound (the test holds the API
port, so binding it would give 75), no JVM and no file; a valid value reaches a defined exit
status, never a traceback.

The variables are read from the README's settings table and from settings.py itself, so a new
variable is fuzzed (with a generic strategy) the day it appears.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from h2o_k8s_discovery.config.settings import IpFamily, RecordType, Settings
from h2o_k8s_discovery.errors import ConfigError
from tests.support.dns_server import DnsServer, ThreadedDnsServer
from tests.support.paths import CHILDREN, PYTHONPATH, REPO
from tests.support.reliability import DEFINED_STATUSES, SERVICE, free_port, write_java

README = REPO / "README.md"
SETTINGS_PY = REPO / "h2o_k8s_discovery" / "config" / "settings.py"


def readme_variables() -> set[str]:
    """The variables of the README's settings table."""
    section = README.read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", section, re.MULTILINE))


def code_variables() -> set[str]:
    """The variables settings.py reads."""
    return set(
        re.findall(r"reader\.(?:get|require)\(\s*\"([A-Z][A-Z0-9_]*)\"", SETTINGS_PY.read_text())
    )


VARIABLES = sorted(readme_variables() | code_variables())
BASE = {"H2O_KUBERNETES_SERVICE_DNS": SERVICE}

# -- what each variable is, and how to find its parsed value ---------------------------------

KINDS = {
    "H2O_KUBERNETES_SERVICE_DNS": "dns_name",
    "H2O_NODE_LOOKUP_TIMEOUT": "count",
    "H2O_NODE_EXPECTED_COUNT": "count",
    "H2O_KUBERNETES_API_PORT": "port",
    "H2O_PORT": "port",
    "H2O_FLATFILE": "path",
    "H2O_JAR": "path",
    "H2O_JVM_STARTUP_CACHE": "path_or_off",
    "H2O_DNS_POLL_INTERVAL": "positive_seconds",
    "H2O_DNS_QUERY_TIMEOUT": "positive_seconds",
    "H2O_DNS_BACKOFF_MAX": "positive_seconds",
    "H2O_NODE_LOOKUP_STABLE_PERIOD": "seconds",
    "H2O_NODE_AGREEMENT_TIMEOUT": "seconds",
    "H2O_SHUTDOWN_GRACE": "seconds",
    "H2O_DNS_RECORD_TYPE": "record_type",
    "H2O_DNS_IP_FAMILY": "ip_family",
    "H2O_DNS_NAMESERVER": "nameserver",
    "JAVA_OPTS": "words",
    "H2O_CLOUD_NAME": "cloud_name",
    "H2O_READY_UNTIL_FORMED": "boolean",
    "H2O_NODE_LOOKUP_FAIL_ON_TIMEOUT": "boolean",
    "H2O_NODE_LOOKUP_AGREEMENT": "boolean",
    "H2O_EXIT_ON_CLOUD_LOSS": "boolean",
    "H2O_CLOUD_LOSS_TIMEOUT": "positive_seconds",
    "H2O_CLOUD_FORMATION_TIMEOUT": "seconds_or_none",
    "H2O_JVM_EARLY_START": "boolean_or_auto",
    "POD_IP": "ip",
    "H2O_DISCOVERY_LOG_LEVEL": "log_level",
    "H2O_REST_USER": "rest_user",
    "H2O_REST_PASSWORD_FILE": "path",
    "H2O_REST_CA_FILE": "path",
    "H2O_REST_TLS_CHECK_HOSTNAME": "boolean",
    "H2O_JKS_PASSWORD_FILE": "path",
}
FIELDS = {
    "H2O_KUBERNETES_SERVICE_DNS": "lookup.service_dns",
    "H2O_NODE_LOOKUP_TIMEOUT": "lookup.timeout",
    "H2O_NODE_EXPECTED_COUNT": "lookup.expected_count",
    "H2O_KUBERNETES_API_PORT": "probe.api_port",
    "H2O_PORT": "lookup.h2o_port",
    "H2O_FLATFILE": "launch.flatfile",
    "H2O_JAR": "launch.jar",
    "H2O_JVM_STARTUP_CACHE": "launch.startup_cache",
    "H2O_DNS_POLL_INTERVAL": "lookup.poll_interval",
    "H2O_DNS_QUERY_TIMEOUT": "lookup.query_timeout",
    "H2O_DNS_BACKOFF_MAX": "lookup.backoff_max",
    "H2O_NODE_LOOKUP_STABLE_PERIOD": "lookup.stable_period",
    "H2O_NODE_AGREEMENT_TIMEOUT": "lookup.agreement_timeout",
    "H2O_SHUTDOWN_GRACE": "launch.shutdown_grace",
    "H2O_DNS_RECORD_TYPE": "lookup.record_type",
    "H2O_DNS_IP_FAMILY": "lookup.ip_family",
    "H2O_DNS_NAMESERVER": "lookup.nameserver",
    "JAVA_OPTS": "launch.java_opts",
    "H2O_CLOUD_NAME": "launch.cloud_name",
    "H2O_READY_UNTIL_FORMED": "probe.ready_until_formed",
    "H2O_NODE_LOOKUP_FAIL_ON_TIMEOUT": "lookup.fail_on_timeout",
    "H2O_NODE_LOOKUP_AGREEMENT": "lookup.agreement",
    "H2O_EXIT_ON_CLOUD_LOSS": "probe.exit_on_cloud_loss",
    "H2O_CLOUD_LOSS_TIMEOUT": "probe.cloud_loss_timeout",
    "H2O_CLOUD_FORMATION_TIMEOUT": "probe.formation_timeout",
    "H2O_JVM_EARLY_START": "launch.early_start",
    "POD_IP": "launch.pod_ip",
    "H2O_DISCOVERY_LOG_LEVEL": "log_level",
    "H2O_REST_USER": "rest.user",
    "H2O_REST_PASSWORD_FILE": "rest.password_file",
    "H2O_REST_CA_FILE": "rest.ca_file",
    "H2O_REST_TLS_CHECK_HOSTNAME": "rest.check_hostname",
    "H2O_JKS_PASSWORD_FILE": "rest.jks_password_file",
}
BOOLEAN_WORDS = ("true", "false", "1", "0", "yes", "no", "on", "off")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def parsed(settings_: Settings, name: str) -> Any:
    value: Any = settings_
    for attribute in FIELDS[name].split("."):
        value = getattr(value, attribute)
    return value


# -- strategies -------------------------------------------------------------------------------

TRICKY = [
    "",
    " ",
    "\t",
    "\n",
    "0",
    "-0",
    "-1",
    "+1",
    "1e3",
    "0x10",
    "1_000",
    "\u0663",  # ARABIC-INDIC DIGIT THREE: str.isdigit() says yes
    "\uff13\uff10",  # fullwidth 30: int() takes it
    "\U0001d7d9",  # MATHEMATICAL DOUBLE-STRUCK DIGIT ONE: int() takes it too
    "\u00b2",  # SUPERSCRIPT TWO: isdigit() yes, int() no
    "1.",
    ".5",
    "NaN",
    "inf",
    "-inf",
    "1e400",
    "9" * 40,
    "a" * 300,
    "\u200b",
    "true",
    "A",
    "SRV",
    "::1",
    "127.0.0.1",
    "[::1]:53",
    "'",
    '"',
    "\\",
    "$(id)",
    "${HOME}",
    "-",
    "--",
    "/",
    ".",
    "..",
]
SPACE = st.sampled_from(["", " ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\x0b", "\x0c"])
NUMBERS = st.one_of(
    st.integers().map(str),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.floats().map(repr),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:f}"),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
)
HOSTILE = st.one_of(st.text(max_size=80), NUMBERS, st.sampled_from(TRICKY))


def mixed_case(words: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.sampled_from(words).flatmap(
        lambda word: st.tuples(*(st.sampled_from([c.lower(), c.upper()]) for c in word)).map(
            "".join
        )
    )


def padded(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Valid-looking values, sometimes with whitespace or a stray character around them."""
    junk = st.one_of(SPACE, st.characters().map(str))
    return st.one_of(
        valid,
        st.tuples(junk, valid).map("".join),
        st.tuples(valid, junk).map("".join),
    )


LABEL = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"),
    min_size=0,
    max_size=70,
)
DNS_NAMES = st.tuples(st.lists(LABEL, min_size=1, max_size=6), st.booleans()).map(
    lambda parts: ".".join(parts[0]) + ("." if parts[1] else "")
)
LONG_NAMES = st.integers(min_value=1, max_value=9).map(
    lambda n: ".".join(["abcdefghijklmnopqrstuvwxyz"] * n * 2)
)
SECONDS = st.one_of(
    st.decimals(min_value=-5, max_value=5000, places=3).map(str),
    st.floats(min_value=-5, max_value=5000).map(lambda f: f"{f:g}"),
    st.integers(min_value=-5, max_value=10**6).map(str),
)


def ip_texts(loopback_only: bool) -> st.SearchStrategy[str]:
    if loopback_only:
        return st.one_of(
            st.integers(min_value=0, max_value=2**24 - 1).map(
                lambda n: str(ipaddress.IPv4Address((127 << 24) + n))
            ),
            st.sampled_from(["::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "127.1", "0177.0.0.1"]),
        )
    return st.one_of(st.ip_addresses().map(str), ip_texts(True))


def zoned(ips: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Addresses, sometimes with an IPv6 zone index (``%eth0``, ``%\n``, ``%é``) appended."""
    zones = st.one_of(st.just("eth0"), st.text(min_size=1, max_size=5))
    return st.one_of(ips, st.tuples(ips, zones).map(lambda pair: f"{pair[0]}%{pair[1]}"))


def nameservers(host_port: tuple[str, int] | None) -> st.SearchStrategy[str]:
    ports = st.one_of(st.integers(min_value=-5, max_value=70000).map(str), st.just(""))
    hosts = ip_texts(host_port is not None)
    if host_port is not None:
        # Mostly our server's own host and port: a valid address nobody serves costs 1 s.
        hosts = st.one_of(st.just(host_port[0]), hosts)
        ports = st.one_of(st.just(str(host_port[1])), ports)
    forms = st.one_of(
        hosts,
        st.tuples(hosts, ports).map(lambda hp: f"{hp[0]}:{hp[1]}"),
        st.tuples(hosts, ports).map(lambda hp: f"[{hp[0]}]:{hp[1]}"),
        hosts.map(lambda h: f"[{h}]"),
    )
    if host_port is None:
        return forms
    ours = f"{host_port[0]}:{host_port[1]}"
    return st.one_of(forms, st.just(ours), padded(st.just(ours)))


def paths() -> st.SearchStrategy[str]:
    segment = st.text(min_size=0, max_size=12)
    return st.lists(segment, min_size=1, max_size=4).map("/".join)


def java_opts() -> st.SearchStrategy[str]:
    word = st.text(alphabet=st.sampled_from("-Dx=ab. '\"\\$é\t"), max_size=12)
    return st.lists(word, max_size=5).map(" ".join)


def cloud_names() -> st.SearchStrategy[str]:
    short = st.text(alphabet=st.sampled_from("abcXYZ019._- é/"), min_size=0, max_size=140)
    return short | st.text(alphabet=st.sampled_from("ab1"), min_size=120, max_size=140)


#: Values close to valid, by kind; the argument keeps network values on loopback when given.
NEAR_VALID: dict[str, Callable[[tuple[str, int] | None], st.SearchStrategy[str]]] = {
    "dns_name": lambda _: padded(st.one_of(DNS_NAMES, LONG_NAMES)),
    "count": lambda _: padded(st.integers(min_value=-5, max_value=10**13).map(str)),
    "port": lambda _: padded(st.integers(min_value=-5, max_value=70000).map(str)),
    "seconds": lambda _: padded(SECONDS),
    "seconds_or_none": lambda _: padded(SECONDS),
    "positive_seconds": lambda _: padded(SECONDS),
    "record_type": lambda _: padded(mixed_case(("A", "SRV", "AAAA", "MX"))),
    "ip_family": lambda _: padded(mixed_case(("auto", "ipv4", "ipv6", "dual", "inet6", "v4"))),
    "boolean": lambda _: padded(mixed_case(BOOLEAN_WORDS)),
    "boolean_or_auto": lambda _: padded(mixed_case((*BOOLEAN_WORDS, "auto", "automatic"))),
    "log_level": lambda _: padded(mixed_case((*LOG_LEVELS, "WARN", "TRACE"))),
    "nameserver": nameservers,
    "ip": lambda dns: padded(zoned(ip_texts(dns is not None))),
    "path": lambda _: paths(),
    "path_or_off": lambda _: paths() | padded(mixed_case(("off", "none"))),
    "words": lambda _: java_opts(),
    "cloud_name": lambda _: cloud_names(),
    "rest_user": lambda _: cloud_names() | st.text(alphabet=st.sampled_from("ab:é \t"), max_size=8),
    "unknown": lambda _: st.one_of(SECONDS, mixed_case(BOOLEAN_WORDS), st.integers().map(str)),
}


def near_valid(name: str, *, dns: tuple[str, int] | None = None) -> st.SearchStrategy[str]:
    """Values close to valid for ``name``; ``dns``: keep network values on loopback."""
    return NEAR_VALID[KINDS.get(name, "unknown")](dns)


def values_for(name: str, *, dns: tuple[str, int] | None = None) -> st.SearchStrategy[str]:
    return st.one_of(HOSTILE, near_valid(name, dns=dns))


# -- the oracle -------------------------------------------------------------------------------

_ASCII_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?")


def _dns_name(raw: str, value: Any) -> None:
    assert value == raw
    assert raw.isascii()
    assert len(raw.removesuffix(".")) <= 253
    labels = raw.removesuffix(".").split(".")
    assert all(len(label) <= 63 and _LABEL.fullmatch(label) for label in labels)


def _count(raw: str, value: Any) -> None:
    assert raw.isascii()
    assert raw.isdigit()
    assert value == int(raw) >= 1


def _port(raw: str, value: Any) -> None:
    assert raw.isascii()
    assert raw.isdigit()
    assert value == int(raw)
    assert 1 <= value <= 65535


def _seconds(raw: str, value: Any) -> None:
    assert _ASCII_DECIMAL.fullmatch(raw), "only plain decimal seconds"
    assert value == float(raw) >= 0


def _seconds_or_none(raw: str, value: Any) -> None:
    assert _ASCII_DECIMAL.fullmatch(raw), "only plain decimal seconds"
    assert value == (float(raw) or None)


def _positive_seconds(raw: str, value: Any) -> None:
    _seconds(raw, value)
    assert value > 0


def _boolean(raw: str, value: Any) -> None:
    assert raw.isascii()
    assert raw.lower() in BOOLEAN_WORDS
    assert value is (raw.lower() in ("true", "1", "yes", "on"))


def _boolean_or_auto(raw: str, value: Any) -> None:
    if raw.lower() == "auto":
        assert value is None
    else:
        _boolean(raw, value)


def _nameserver(_raw: str, value: Any) -> None:
    assert 1 <= value.port <= 65535
    assert ipaddress.ip_address(str(value.ip)) == value.ip


def _path(raw: str, value: Any) -> None:
    assert raw
    assert "\x00" not in raw
    assert value == Path(raw)


def _path_or_off(raw: str, value: Any) -> None:
    if raw.lower() == "off":
        assert value is None
    else:
        _path(raw, value)


def _cloud_name(raw: str, value: Any) -> None:
    assert re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", raw)
    assert value == raw


def _rest_user(raw: str, value: Any) -> None:
    assert value == raw
    assert raw
    assert ":" not in raw
    assert raw.isprintable()


def _record_type(_raw: str, value: Any) -> None:
    assert isinstance(value, RecordType)


def _ip_family(raw: str, value: Any) -> None:
    assert isinstance(value, IpFamily)
    assert raw.isascii()
    assert value.value == raw.lower()


def _log_level(_raw: str, value: Any) -> None:
    assert value in LOG_LEVELS


def _ip(raw: str, value: Any) -> None:
    assert value == ipaddress.ip_address(raw)


def _words(raw: str, value: Any) -> None:
    assert value == tuple(shlex.split(raw))


#: What an accepted value must look like once parsed, by kind (from the README's table).
ACCEPTED: dict[str, Callable[[str, Any], None]] = {
    "dns_name": _dns_name,
    "count": _count,
    "port": _port,
    "seconds": _seconds,
    "seconds_or_none": _seconds_or_none,
    "positive_seconds": _positive_seconds,
    "record_type": _record_type,
    "ip_family": _ip_family,
    "boolean": _boolean,
    "boolean_or_auto": _boolean_or_auto,
    "log_level": _log_level,
    "nameserver": _nameserver,
    "ip": _ip,
    "path": _path,
    "path_or_off": _path_or_off,
    "words": _words,
    "cloud_name": _cloud_name,
    "rest_user": _rest_user,
}


def check_accepted(name: str, raw: str, settings_: Settings) -> None:
    """An accepted value is held as the README documents it."""
    kind = KINDS.get(name, "unknown")
    if kind in ACCEPTED:
        ACCEPTED[kind](raw, parsed(settings_, name))
    if name == "H2O_KUBERNETES_API_PORT":
        assert settings_.probe.api_port not in (54321, 54322), "collides with H2O's ports"
    if name == "H2O_PORT":
        assert 8080 not in (settings_.lookup.h2o_port, settings_.lookup.h2o_port + 1)


def check_refused(name: str, raw: str, problems: tuple[str, ...]) -> None:
    """A refused value gives exactly one problem, on one line, naming the variable and value."""
    assert len(problems) == 1, problems
    (problem,) = problems
    # Ports that collide are one problem naming both variables, the API port first.
    assert problem.startswith(f"{name}=") or ("collides" in problem and name in problem), problem
    # The value is quoted, or its secret-looking parts are hidden (``***``), or it collides.
    assert repr(raw) in problem or "***" in problem or "collides" in problem, problem
    assert "\n" not in problem


def outcome(env: dict[str, str]) -> Settings | ConfigError:
    try:
        return Settings.from_env(env)
    except ConfigError as err:
        return err


# -- in-process ---------------------------------------------------------------------------------


def test_every_variable_is_documented_and_read() -> None:
    """The README's settings table and the variables settings.py reads are the same set."""
    assert code_variables() - readme_variables() == set(), "read but not documented"
    assert readme_variables() - code_variables() == set(), "documented but not read"
    assert set(KINDS) >= set(VARIABLES), "a new variable: give it a kind and a field here"


@pytest.mark.parametrize("name", VARIABLES)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_from_env_any_value(name: str, data: st.DataObject) -> None:
    """Any value is accepted as documented or refused naming the variable; nothing else."""
    raw = data.draw(values_for(name), label=name)
    result = outcome({**BASE, name: raw})
    if isinstance(result, ConfigError):
        check_refused(name, raw, result.problems)
    else:
        check_accepted(name, raw, result)


def depends_on_two(problem: str) -> bool:
    """The problems that depend on two variables (ports that collide, an early start without
    POD_IP, an address family other than POD_IP's): left out when variables are compared one
    by one."""
    return "collides" in problem or "needs POD_IP" in problem or "contradicts POD_IP" in problem


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_from_env_all_variables_at_once(data: st.DataObject) -> None:
    """Every variable fuzzed together: the error names exactly the ones refused alone."""
    env = {name: data.draw(values_for(name), label=name) for name in VARIABLES}
    alone: set[str] = set()
    for name in VARIABLES:
        result = outcome({**BASE, name: env[name]})
        if isinstance(result, ConfigError) and not depends_on_two(result.problems[0]):
            alone.add(name)
    together = outcome(env)
    problems = () if isinstance(together, Settings) else together.problems
    named = {p.split("=", 1)[0] for p in problems if not depends_on_two(p)}
    assert named == alone, problems


LOOKALIKES = [
    # LATIN SMALL LETTER LONG S and DOTLESS I upper-case to ASCII "S" and "I".
    pytest.param("H2O_DNS_RECORD_TYPE", "\u017frv", id="record-type-long-s"),
    pytest.param("H2O_DISCOVERY_LOG_LEVEL", "\u0131nfo", id="level-dotless-i"),
    pytest.param("H2O_DNS_IP_FAMILY", "\u0131pv6", id="ip-family-dotless-i"),
    # Look-alikes without an ASCII upper or lower case: refused even by a case-folding rule.
    pytest.param("H2O_DISCOVERY_LOG_LEVEL", "debu\u0262", id="level-small-capital-g"),
    pytest.param("H2O_READY_UNTIL_FORMED", "\u212arue", id="boolean-kelvin-sign"),
]


@pytest.mark.parametrize(("name", "raw"), LOOKALIKES)
def test_lookalike_letters_are_refused(name: str, raw: str) -> None:
    """A word spelt with non-ASCII look-alike letters is refused, not read as A/SRV or INFO."""
    with pytest.raises(ConfigError):
        Settings.from_env({**BASE, name: raw})


ZONED = ["::1%eth0", "fe80::1%\u00e9", "::1%\n"]


@pytest.mark.parametrize("raw", ZONED)
def test_pod_ip_with_a_zone_index_is_refused(raw: str) -> None:
    """POD_IP is an address H2O can be given: an IPv6 zone index (``%eth0``) is refused."""
    with pytest.raises(ConfigError):
        Settings.from_env({**BASE, "POD_IP": raw})


# -- the real command ---------------------------------------------------------------------------


@dataclass
class Zygote:
    """The forking runner of tests/support/children/cli_zygote.py."""

    process: subprocess.Popen[str]

    def run(self, argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
        out, err = cwd / "stdout", cwd / "stderr"
        request = {
            "argv": argv,
            "env": env,
            "cwd": str(cwd),
            "out": str(out),
            "err": str(err),
            "timeout": 20,
        }
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = json.loads(self.process.stdout.readline())
        assert not reply["timed_out"], f"run did not end within 20 s: {err.read_text()[-2000:]}"
        return (
            int(reply["status"]),
            out.read_text(errors="replace"),
            err.read_text(errors="replace"),
        )


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    process = subprocess.Popen(
        [sys.executable, str(CHILDREN / "cli_zygote.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
    )
    yield Zygote(process)
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.close()
    process.wait(timeout=30)
    process.stdout.close()


@pytest.fixture(scope="module")
def service_dns() -> Iterator[DnsServer]:
    """The Service with one pod, by A and by SRV record, so every record type finds it."""
    with ThreadedDnsServer("127.0.0.1") as server:
        server.set_records(f"pod-0.{SERVICE}", a=["127.0.0.1"])
        server.set_records(SERVICE, a=["127.0.0.1"], srv=[(0, 0, 54321, f"pod-0.{SERVICE}")])
        yield server


@pytest.fixture(scope="module")
def java_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_java(tmp_path_factory.mktemp("java") / "bin").parent


def env_safe(value: str) -> bool:
    """Can be passed in an environment: no NUL, and encodable to bytes by the OS layer."""
    if "\x00" in value:
        return False
    try:
        os.fsencode(value)
    except UnicodeEncodeError:
        return False
    return True


def confined_path(raw: str) -> str:
    """A flatfile path kept under the run's working directory: relative, no '..'."""
    return "/".join(part if part != ".." else "__" for part in raw.lstrip("/").split("/"))


@contextlib.contextmanager
def held_port() -> Iterator[int]:
    """A listening socket on every address: an entrypoint binding this port would exit 75."""
    with socket.socket(socket.AF_INET6) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
        sock.listen()
        yield sock.getsockname()[1]


def cli_value(name: str, dns: DnsServer) -> st.SearchStrategy[str]:
    """Values safe to hand to a real ``run``: network values on loopback, paths confined."""
    values = values_for(name, dns=(dns.host, dns.port)).filter(env_safe)
    if name == "H2O_FLATFILE":
        values = values.map(confined_path)
    return values


def stays_on_loopback(name: str, env: dict[str, str]) -> bool:
    """False when a valid value would send packets off this machine (never done here)."""
    result = outcome(env)
    if isinstance(result, ConfigError):
        return True
    if name == "POD_IP":
        return bool(result.launch.pod_ip is None or result.launch.pod_ip.is_loopback)
    if name == "H2O_DNS_NAMESERVER":
        server = result.lookup.nameserver
        return server is None or server.ip.is_loopback
    return True


def base_cli_env(dns: DnsServer, java_bin: Path, workdir: Path) -> dict[str, str]:
    return {
        "PATH": f"{java_bin}:{os.environ['PATH']}",
        "H2O_KUBERNETES_SERVICE_DNS": SERVICE,
        "H2O_DNS_NAMESERVER": f"{dns.host}:{dns.port}",
        "H2O_NODE_EXPECTED_COUNT": "1",
        "H2O_NODE_LOOKUP_TIMEOUT": "1",
        "H2O_NODE_LOOKUP_AGREEMENT": "false",
        "H2O_DNS_POLL_INTERVAL": "0.1",
        "H2O_KUBERNETES_API_PORT": str(free_port()),
        "H2O_JAR": str(workdir / "h2o.jar"),
        "H2O_FLATFILE": str(workdir / "out" / "flatfile"),
        "POD_IP": "127.0.0.1",
        "H2O_SHUTDOWN_GRACE": "1",
        "STAND_IN_MODE": "exit:0",
        "STAND_IN_DIR": str(workdir / "evidence"),
    }


def publish_for(name: str, raw: str, dns: DnsServer) -> Callable[[], None]:
    """Make a valid value find its pods at once (not after the 1 s timeout); returns an undo."""
    result = outcome({**BASE, name: raw})
    if isinstance(result, ConfigError):
        return lambda: None
    if name == "H2O_KUBERNETES_SERVICE_DNS":
        with contextlib.suppress(ValueError):
            dns.set_records(raw, a=["127.0.0.1"])
            return lambda: dns.remove(raw)
    count = result.lookup.expected_count
    if name == "H2O_NODE_EXPECTED_COUNT" and count is not None and count <= 20:
        dns.set_records(SERVICE, a=[f"127.0.0.{i}" for i in range(1, count + 1)])
        return lambda: dns.set_records(
            SERVICE, a=["127.0.0.1"], srv=[(0, 0, 54321, f"pod-0.{SERVICE}")]
        )
    return lambda: None


#: Checked at start against each other and against H2O's arguments (``load_rest_access``): set
#: alone, without ``-jks`` or a login option after ``--``, each is refused naming itself.
PAIRED_AT_START = {
    "H2O_REST_USER",
    "H2O_REST_PASSWORD_FILE",
    "H2O_REST_CA_FILE",
    "H2O_JKS_PASSWORD_FILE",
}


@pytest.mark.parametrize("name", VARIABLES)
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_run_command_any_value(
    name: str,
    data: st.DataObject,
    zygote: Zygote,
    service_dns: DnsServer,
    java_bin: Path,
) -> None:
    """``run`` with one fuzzed variable: exit 2 naming it, or a defined status; no traceback."""
    raw = data.draw(cli_value(name, service_dns), label=name)
    with tempfile.TemporaryDirectory(prefix="h2o-fuzz-") as tmp:
        workdir = Path(tmp)
        (workdir / "evidence").mkdir()
        (workdir / "h2o.jar").write_bytes(b"stand-in jar")
        env = base_cli_env(service_dns, java_bin, workdir)
        env[name] = raw
        assume(stays_on_loopback(name, env))
        refused = isinstance(outcome(env), ConfigError)
        undo = publish_for(name, raw, service_dns)
        try:
            with held_port() if refused else contextlib.nullcontext(0) as port:
                if refused and name != "H2O_KUBERNETES_API_PORT":
                    env["H2O_KUBERNETES_API_PORT"] = str(port)
                status, out, err = zygote.run(["run"], env, workdir)
        finally:
            undo()
        assert "Traceback" not in err + out, err
        assert status in DEFINED_STATUSES | {0}, (status, err)
        started = (workdir / "evidence" / "argv.json").exists()
        if refused:
            assert status == 2, err
            assert f"{name}=" in err
            assert out == ""
            assert not started, "a JVM was started"
            assert not (workdir / "out").exists(), "a file was written"
        elif name in PAIRED_AT_START:
            assert status == 2, err
            assert name in err
            assert not started, "a JVM was started"
        else:
            assert status != 2, err
            assert started == (status == 0), (status, err)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_python_m_run_all_variables_at_once(
    data: st.DataObject, service_dns: DnsServer, java_bin: Path
) -> None:
    """``python -m h2o_k8s_discovery run`` with every variable fuzzed: all problems, exit 2."""
    with tempfile.TemporaryDirectory(prefix="h2o-fuzz-") as tmp, held_port() as port:
        workdir = Path(tmp)
        (workdir / "evidence").mkdir()
        env = base_cli_env(service_dns, java_bin, workdir)
        for name in VARIABLES:
            env[name] = data.draw(cli_value(name, service_dns), label=name)
        env["H2O_KUBERNETES_API_PORT"] = data.draw(
            st.sampled_from([str(port), env["H2O_KUBERNETES_API_PORT"]]), label="api port"
        )
        result = outcome(env)
        assume(isinstance(result, ConfigError))
        assert isinstance(result, ConfigError)
        done = subprocess.run(
            [sys.executable, "-m", "h2o_k8s_discovery", "run"],
            env={**env, "PYTHONPATH": PYTHONPATH},
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        expected = "h2o-k8s-discovery: invalid settings:\n" + "".join(
            f"  - {problem}\n" for problem in result.problems
        )
        assert done.stderr == expected
        assert done.stdout == ""
        assert not (workdir / "evidence" / "argv.json").exists()
        assert not (workdir / "out").exists()


@pytest.mark.parametrize("raw", ["::1%\u00e9", "::1%\n"], ids=["non-ascii-zone", "newline-zone"])
def test_run_with_a_zoned_pod_ip_fails_cleanly(
    raw: str, zygote: Zygote, service_dns: DnsServer, java_bin: Path, tmp_path: Path
) -> None:
    """``run`` with a zoned POD_IP exits 2 naming POD_IP: no traceback, flatfile or JVM."""
    (tmp_path / "evidence").mkdir()
    (tmp_path / "h2o.jar").write_bytes(b"stand-in jar")
    env = {**base_cli_env(service_dns, java_bin, tmp_path), "POD_IP": raw}
    status, out, err = zygote.run(["run"], env, tmp_path)
    assert "Traceback" not in err + out
    assert status == 2, err
    assert "POD_IP=" in err
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evidence" / "argv.json").exists()
