"""Settings: H2O's variable names and rules, and a clear error for every bad value."""

from __future__ import annotations

import ipaddress
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h2o_k8s_discovery.config.settings import Nameserver, RecordType, Settings
from h2o_k8s_discovery.errors import ConfigError

SERVICE = {"H2O_KUBERNETES_SERVICE_DNS": "h2o-service.h2o-statefulset.svc.cluster.local"}


def problems_for(env: dict[str, str]) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    return caught.value.problems


def test_defaults_follow_h2o() -> None:
    """With only the service name set, the defaults are H2O's: 180 s, no count, API port 8080."""
    settings = Settings.from_env(SERVICE)
    assert settings.lookup.timeout == 180
    assert settings.lookup.expected_count is None
    assert settings.probe.api_port == 8080
    assert settings.lookup.h2o_port == 54321
    assert settings.lookup.record_type is RecordType.A
    assert settings.probe.ready_until_formed is True


def test_seed_manifest_environment() -> None:
    """The four variables of H2O's own manifest are read as H2O reads them."""
    settings = Settings.from_env(
        {
            **SERVICE,
            "H2O_NODE_LOOKUP_TIMEOUT": "180",
            "H2O_NODE_EXPECTED_COUNT": "3",
            "H2O_KUBERNETES_API_PORT": "8081",
        }
    )
    assert settings.lookup.timeout == 180
    assert settings.lookup.expected_count == 3
    assert settings.probe.api_port == 8081


def test_only_the_count_means_no_deadline() -> None:
    """H2O's rule: with only the expected count set, the lookup has no timeout."""
    settings = Settings.from_env({**SERVICE, "H2O_NODE_EXPECTED_COUNT": "3"})
    assert settings.lookup.timeout is None


def test_absolute_name_has_a_trailing_dot() -> None:
    """The name is queried as an absolute name, so no search domain is appended."""
    assert Settings.from_env(SERVICE).lookup.absolute_name.endswith(".local.")
    dotted = Settings.from_env({"H2O_KUBERNETES_SERVICE_DNS": "svc.example."})
    assert dotted.lookup.absolute_name == "svc.example."


def test_our_own_settings() -> None:
    """The project's own variables are read with their units."""
    settings = Settings.from_env(
        {
            **SERVICE,
            "H2O_PORT": "54400",
            "H2O_FLATFILE": "/tmp/x/flat",
            "H2O_DNS_POLL_INTERVAL": "0.25",
            "H2O_DNS_RECORD_TYPE": "srv",
            "H2O_DNS_NAMESERVER": "[::1]:5353",
            "JAVA_OPTS": "-Xmx1g '-Dx=a b'",
            "H2O_CLOUD_NAME": "prod-cloud",
            "POD_IP": "198.18.0.11",
            "H2O_READY_UNTIL_FORMED": "false",
        }
    )
    assert settings.lookup.h2o_port == 54400
    assert settings.launch.flatfile == Path("/tmp/x/flat")
    assert settings.lookup.poll_interval == 0.25
    assert settings.lookup.record_type is RecordType.SRV
    assert settings.lookup.nameserver == Nameserver(ipaddress.ip_address("::1"), 5353)
    assert settings.launch.java_opts == ("-Xmx1g", "-Dx=a b")
    assert settings.launch.cloud_name == "prod-cloud"
    assert settings.launch.pod_ip == ipaddress.ip_address("198.18.0.11")
    assert settings.probe.ready_until_formed is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10.96.0.10", ("10.96.0.10", 53)),
        ("10.96.0.10:5353", ("10.96.0.10", 5353)),
        ("fd00::a", ("fd00::a", 53)),
        ("[fd00::a]", ("fd00::a", 53)),
        ("[fd00::a]:54", ("fd00::a", 54)),
    ],
)
def test_nameserver_forms(raw: str, expected: tuple[str, int]) -> None:
    """H2O_DNS_NAMESERVER takes an IPv4 or IPv6 address with an optional port."""
    settings = Settings.from_env({**SERVICE, "H2O_DNS_NAMESERVER": raw})
    assert settings.lookup.nameserver == Nameserver(ipaddress.ip_address(expected[0]), expected[1])


BAD_VALUES = [
    ("H2O_KUBERNETES_SERVICE_DNS", ""),
    ("H2O_KUBERNETES_SERVICE_DNS", "bad..name"),
    ("H2O_KUBERNETES_SERVICE_DNS", "-leading.hyphen"),
    ("H2O_KUBERNETES_SERVICE_DNS", "a" * 64 + ".example"),
    ("H2O_KUBERNETES_SERVICE_DNS", ".".join(["abcdefghi"] * 26)),
    ("H2O_KUBERNETES_SERVICE_DNS", "has space.example"),
    ("H2O_NODE_LOOKUP_TIMEOUT", "0"),
    ("H2O_NODE_LOOKUP_TIMEOUT", "-5"),
    ("H2O_NODE_LOOKUP_TIMEOUT", "1.5"),
    ("H2O_NODE_LOOKUP_TIMEOUT", " 30"),
    ("H2O_NODE_LOOKUP_TIMEOUT", "\uff13\uff10"),  # fullwidth digits: int() would take them
    ("H2O_NODE_EXPECTED_COUNT", "three"),
    ("H2O_NODE_EXPECTED_COUNT", "0"),
    ("H2O_NODE_EXPECTED_COUNT", "9" * 40),
    ("H2O_KUBERNETES_API_PORT", "0"),
    ("H2O_KUBERNETES_API_PORT", "65536"),
    ("H2O_KUBERNETES_API_PORT", ""),
    ("H2O_PORT", "65535"),
    ("H2O_DNS_POLL_INTERVAL", "0"),
    ("H2O_DNS_POLL_INTERVAL", "fast"),
    ("H2O_DNS_RECORD_TYPE", "MX"),
    ("H2O_DNS_IP_FAMILY", "dual"),
    ("H2O_DNS_NAMESERVER", "dns.example"),
    ("H2O_DNS_NAMESERVER", "10.0.0.1:99999"),
    ("H2O_DNS_NAMESERVER", "[::1"),
    ("H2O_FLATFILE", ""),
    ("JAVA_OPTS", "-Dx='unclosed"),
    ("H2O_CLOUD_NAME", "has space"),
    ("H2O_SHUTDOWN_GRACE", "forever"),
    ("H2O_READY_UNTIL_FORMED", "maybe"),
    ("POD_IP", "198.18.0.999"),
    ("H2O_DISCOVERY_LOG_LEVEL", "LOUD"),
    ("H2O_NODE_LOOKUP_STABLE_PERIOD", "-1"),
    ("H2O_NODE_LOOKUP_FAIL_ON_TIMEOUT", "sometimes"),
    ("H2O_NODE_LOOKUP_AGREEMENT", ""),
    ("H2O_NODE_AGREEMENT_TIMEOUT", "1e3"),
    ("H2O_EXIT_ON_CLOUD_LOSS", "2"),
    ("H2O_CLOUD_LOSS_TIMEOUT", "0.5"),
    ("H2O_CLOUD_LOSS_TIMEOUT", "a minute"),
    ("H2O_DNS_QUERY_TIMEOUT", "0"),
    ("H2O_DNS_BACKOFF_MAX", "soon"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_bad_value_names_variable_and_value(name: str, value: str) -> None:
    """A bad value is reported with the variable's name, the value received and what is expected."""
    (problem,) = problems_for({**SERVICE, name: value})
    assert problem.startswith(f"{name}=")
    assert repr(value) in problem
    assert "expected" in problem or "check" in problem


def test_formation_safety_settings() -> None:
    """The formation-safety variables are read with their units; the defaults are the safe ones."""
    defaults = Settings.from_env(SERVICE)
    assert defaults.lookup.stable_period == 0
    assert defaults.lookup.fail_on_timeout is True
    assert defaults.lookup.agreement is True
    assert defaults.probe.exit_on_cloud_loss is True
    assert defaults.probe.cloud_loss_timeout == 60
    settings = Settings.from_env(
        {
            **SERVICE,
            "H2O_NODE_LOOKUP_STABLE_PERIOD": "2.5",
            "H2O_NODE_LOOKUP_FAIL_ON_TIMEOUT": "false",
            "H2O_NODE_LOOKUP_AGREEMENT": "false",
            "H2O_NODE_AGREEMENT_TIMEOUT": "10",
            "H2O_EXIT_ON_CLOUD_LOSS": "no",
            "H2O_CLOUD_LOSS_TIMEOUT": "12.5",
        }
    )
    assert settings.lookup.stable_period == 2.5
    assert settings.lookup.fail_on_timeout is False
    assert settings.lookup.agreement is False
    assert settings.lookup.agreement_timeout == 10
    assert settings.probe.exit_on_cloud_loss is False
    assert settings.probe.cloud_loss_timeout == 12.5


def test_missing_service_name_is_reported() -> None:
    """Without H2O_KUBERNETES_SERVICE_DNS nothing can be looked up: the error says what to set."""
    (problem,) = problems_for({})
    assert "H2O_KUBERNETES_SERVICE_DNS is not set" in problem


def test_all_problems_reported_together() -> None:
    """Every bad variable is reported in one error, not one per attempt."""
    problems = problems_for(
        {"H2O_NODE_LOOKUP_TIMEOUT": "x", "H2O_NODE_EXPECTED_COUNT": "y", "H2O_PORT": "z"}
    )
    assert len(problems) == 4
    joined = "\n".join(problems)
    for name in ("H2O_KUBERNETES_SERVICE_DNS", "H2O_NODE_LOOKUP_TIMEOUT", "H2O_PORT"):
        assert name in joined


def test_api_port_must_not_collide_with_h2o() -> None:
    """The probe port cannot be H2O's port or its internal port + 1."""
    (problem,) = problems_for({**SERVICE, "H2O_KUBERNETES_API_PORT": "54322"})
    assert "collides" in problem


def test_empty_java_opts_means_none() -> None:
    """An empty JAVA_OPTS is a legitimate way to pass no JVM options."""
    assert Settings.from_env({**SERVICE, "JAVA_OPTS": ""}).launch.java_opts == ()


VARIABLES = sorted({name for name, _ in BAD_VALUES} - {"JAVA_OPTS"})


@given(
    name=st.sampled_from(VARIABLES),
    value=st.text(max_size=40) | st.integers().map(str) | st.floats().map(str),
)
def test_any_value_parses_or_fails_cleanly(name: str, value: str) -> None:
    """Whatever the value, the result is valid settings or a ConfigError naming the variable."""
    try:
        Settings.from_env({**SERVICE, name: value})
    except ConfigError as err:
        problems = err.problems
    else:
        return
    assert any(p.startswith(name) for p in problems)


@given(st.integers(min_value=1, max_value=65535))
def test_every_valid_api_port_is_accepted(port: int) -> None:
    """Any port from 1 to 65535 away from H2O's two ports is accepted."""
    env = {**SERVICE, "H2O_KUBERNETES_API_PORT": str(port)}
    if port in (54321, 54322):
        assert problems_for(env)
    else:
        assert Settings.from_env(env).probe.api_port == port


@given(
    st.lists(
        st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=20),
        min_size=1,
        max_size=5,
    )
)
def test_well_formed_names_are_accepted(labels: list[str]) -> None:
    """Names made of ordinary labels are accepted unchanged."""
    name = ".".join(labels)
    assert Settings.from_env({"H2O_KUBERNETES_SERVICE_DNS": name}).lookup.service_dns == name
