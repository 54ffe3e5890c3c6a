"""Real TLS and login material for tests: keystores made with the JDK's keytool, H2O realms.

Each keystore holds one self-signed RSA certificate, which is also the CA a client trusts; its
IP SANs are chosen per test (the pods' own addresses, or none).
"""

from __future__ import annotations

import hashlib
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from h2o_k8s_discovery.config.rest_security import H2O_DEFAULT_JKS_PASS


@dataclass(frozen=True)
class Keystore:
    path: Path
    password: str
    #: The certificate in PEM: what H2O_REST_CA_FILE names.
    ca_pem: Path


def make_keystore(
    directory: Path, name: str, ips: Sequence[str], password: str = H2O_DEFAULT_JKS_PASS
) -> Keystore:
    """A PKCS12 keystore with a self-signed certificate for ``ips`` (IP SANs), and its PEM."""
    directory.mkdir(parents=True, exist_ok=True)
    path, pem = directory / f"{name}.p12", directory / f"{name}.pem"
    san = ["-ext", "SAN=" + ",".join(f"ip:{ip}" for ip in ips)] if ips else []
    keytool = ["keytool", "-noprompt", "-storepass", password]
    subprocess.run(
        [
            *keytool,
            "-genkeypair",
            "-keyalg",
            "RSA",
            "-keysize",
            "2048",
            "-alias",
            "h2o",
            "-dname",
            f"CN={name}",
            *san,
            "-validity",
            "2",
            "-keystore",
            str(path),
            "-storetype",
            "PKCS12",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(
        [
            *keytool,
            "-exportcert",
            "-rfc",
            "-alias",
            "h2o",
            "-keystore",
            str(path),
            "-file",
            str(pem),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return Keystore(path, password, pem)


def make_realm(directory: Path, user: str, password: str) -> Path:
    """An H2O ``-hash_login`` realm (Jetty's HashLoginService format, MD5-hashed password)."""
    realm = directory / "realm.properties"
    digest = hashlib.md5(password.encode(), usedforsecurity=False).hexdigest()
    realm.write_text(f"{user}: MD5:{digest},user\n", encoding="utf-8")
    return realm


def secret_file(directory: Path, name: str, value: str) -> Path:
    """A password file as a mounted Secret gives it (with the trailing newline ``echo`` adds)."""
    path = directory / name
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def new_password() -> str:
    """A password distinct enough to grep for in logs."""
    return "pw-" + secrets.token_hex(12)
