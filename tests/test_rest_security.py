"""Reading H2O's REST security from the settings and the h2o.jar arguments, checked at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from h2o_k8s_discovery.config.redaction import redacted
from h2o_k8s_discovery.config.rest_security import load_rest_access, parse_h2o_args
from h2o_k8s_discovery.config.settings import RestSettings
from h2o_k8s_discovery.errors import ConfigError
from tests.support.tls_material import make_keystore, secret_file


def problems_of(rest: RestSettings, args: list[str] | None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_rest_access(rest, args)
    return "\n".join(caught.value.problems)


def test_h2o_args_name_the_login_and_the_keystore() -> None:
    """The login option and ``-jks``'s file are read; a value is never taken for an option."""
    args = parse_h2o_args(["-jks_pass", "-hash_login", "-login_conf", "r", "-jks", "k.p12"])
    assert args.login is None  # "-hash_login" here is -jks_pass's value, as H2O reads it
    assert args.jks == "k.p12"
    assert args.jks_pass_given
    assert parse_h2o_args(["-ldap_login", "-login_conf", "l"]).login == "-ldap_login"


def test_the_password_comes_from_its_file(tmp_path: Path) -> None:
    """The file's one line is the password; the trailing newline of ``echo`` is dropped."""
    password = "s3 cret"  # noqa: S105 - a test value, with a space to show it is kept
    rest = RestSettings(user="u", password_file=secret_file(tmp_path, "pw", password))
    access = load_rest_access(rest, ["-hash_login", "-login_conf", "realm"])
    assert access.password == password
    assert access.headers() == {"Authorization": "Basic dTpzMyBjcmV0"}
    assert password not in repr(access)
    assert not access.https


def test_a_missing_password_file_names_the_variable(tmp_path: Path) -> None:
    """A password file that is not there: the problem names H2O_REST_PASSWORD_FILE and path."""
    missing = tmp_path / "nothing"
    text = problems_of(RestSettings(user="u", password_file=missing), None)
    assert f"H2O_REST_PASSWORD_FILE={str(missing)!r}" in text
    assert "mount the Secret" in text


@pytest.mark.parametrize(
    ("rest", "args", "expected"),
    [
        (RestSettings(user="u"), None, "H2O_REST_PASSWORD_FILE is not"),
        (RestSettings(), ["-hash_login", "-login_conf", "r"], "H2O_REST_USER and"),
        (RestSettings(), ["-jks", "k.p12"], "H2O_REST_CA_FILE is not set"),
        (RestSettings(ca_file=Path("/dev/null")), [], "have no -jks"),
        (RestSettings(jks_password_file=Path("/dev/null")), [], "H2O_JKS_PASSWORD_FILE="),
    ],
)
def test_pairings_that_cannot_work_are_refused(
    rest: RestSettings, args: list[str] | None, expected: str
) -> None:
    """A login option without credentials, -jks without a CA and the like are refused."""
    assert expected in problems_of(rest, args)


def test_a_ca_file_without_certificates_is_refused(tmp_path: Path) -> None:
    """H2O_REST_CA_FILE naming a file with no PEM certificate is refused at start."""
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    text = problems_of(RestSettings(ca_file=junk), ["-jks", "k.p12"])
    assert "H2O_REST_CA_FILE=" in text


def test_a_real_ca_file_means_https(tmp_path: Path) -> None:
    """A keytool-made certificate as H2O_REST_CA_FILE, with -jks: HTTPS, chain and name checked."""
    keystore = make_keystore(tmp_path, "h2o", ["198.18.0.2"])
    access = load_rest_access(RestSettings(ca_file=keystore.ca_pem), ["-jks", str(keystore.path)])
    assert access.scheme == "https"
    context = access.ssl_context()
    assert context is not None
    assert context.check_hostname


def test_jks_pass_is_redacted_in_the_logged_command() -> None:
    """``-jks_pass``'s value never appears in the command line ``run`` logs."""
    assert redacted(["-jks", "k", "-jks_pass", "hunter2"]) == ["-jks", "k", "-jks_pass", "***"]


def ssl_loaded_after_loading(rest: str, args: str) -> bool:
    """Whether a fresh interpreter has ``ssl`` after the CLI's imports and ``load_rest_access``."""
    code = (
        "import sys, json\n"
        "import h2o_k8s_discovery.commands.cli\n"
        "from pathlib import Path\n"
        "from h2o_k8s_discovery.config.rest_security import load_rest_access\n"
        "from h2o_k8s_discovery.config.settings import RestSettings\n"
        f"load_rest_access({rest}, {args})\n"
        "print(json.dumps('ssl' in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(Path(__file__).parent.parent)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded: bool = json.loads(done.stdout.splitlines()[-1])
    return loaded


def test_ssl_is_imported_only_for_https(tmp_path: Path) -> None:
    """Plain HTTP with a login loads no ``ssl``, so ``run`` can still keep OpenSSL out."""
    password = secret_file(tmp_path, "pw", "x")
    plain = f"RestSettings(user='u', password_file=Path({str(password)!r}))"
    assert not ssl_loaded_after_loading(plain, "['-hash_login']")
    keystore = make_keystore(tmp_path, "h2o", [])
    https = f"RestSettings(ca_file=Path({str(keystore.ca_pem)!r}))"
    assert ssl_loaded_after_loading(https, f"['-jks', {str(keystore.path)!r}]")
