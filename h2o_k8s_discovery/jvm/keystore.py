"""Keeping the keystore's password off H2O's command line.

H2O takes its keystore's password only as ``-jks_pass PASS`` (or ``-Dai.h2o.jks_pass=PASS``,
which H2O turns into the same argument), and logs its arguments at start: ``Processed H2O
arguments: [..., -jks_pass, PASS, ...]``, in ``kubectl logs`` and in its own log files, and the
JVM's command line shows it in ``/proc/<pid>/cmdline``. Without ``-jks_pass`` H2O opens the
keystore with its documented default password, ``h2oh2o``.

So with ``H2O_JKS_PASSWORD_FILE``, ``run`` copies the keystore of ``-jks`` once at start, with
the JDK's ``keytool`` (which reads the password from that file itself), into a PKCS12 file
under H2O's default password, readable by this user only, and gives H2O that copy instead. The
copy is as safe as the Secret it came from: both are readable by the same user in the same pod
only, as a web server's unencrypted key file is; the password that protects the keystore
outside the pod (in the Secret's store, in backups) is never shown to anyone.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from h2o_k8s_discovery.config.rest_security import H2O_DEFAULT_JKS_PASS
from h2o_k8s_discovery.errors import ConfigError

#: The copy's name, next to the flatfile (under /tmp, so a read-only root filesystem works).
COPY_NAME = "rest-keystore.p12"
#: keytool starts a small JVM; a second or two, more on a loaded node.
_KEYTOOL_TIMEOUT = 60.0


def with_private_keystore(args: Sequence[str], password_file: Path, directory: Path) -> list[str]:
    """``args`` with ``-jks``'s keystore replaced by a copy under H2O's default password.

    Raises ``ConfigError`` naming ``H2O_JKS_PASSWORD_FILE`` when keytool cannot open the
    keystore with that password (or is missing).
    """
    words = list(args)
    index = words.index("-jks") + 1
    if index >= len(words):
        raise ConfigError(["-jks has no keystore file after it among the h2o.jar arguments"])
    copy = directory / COPY_NAME
    _copy_keystore(Path(words[index]), password_file, copy)
    words[index] = str(copy)
    return words


def _copy_keystore(source: Path, password_file: Path, copy: Path) -> None:
    if not source.is_file():
        raise ConfigError(
            [f"-jks {source}: no such file: mount the keystore there, or fix the path"]
        )
    keytool = _keytool()
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.unlink(missing_ok=True)  # keytool would add to an old copy, under its old password
    command = [
        keytool,
        "-importkeystore",
        "-noprompt",
        "-srckeystore",
        str(source),
        "-srcstorepass:file",
        str(password_file),
        "-destkeystore",
        str(copy),
        "-deststoretype",
        "PKCS12",
        # H2O's public default, not a secret: the one password H2O needs no argument for.
        "-deststorepass",
        H2O_DEFAULT_JKS_PASS,
    ]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=_KEYTOOL_TIMEOUT,
            check=False,
            umask=0o077,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ConfigError(
            [f"H2O_JKS_PASSWORD_FILE: keytool could not copy the keystore {source} ({err})"]
        ) from None
    if done.returncode != 0:
        reason = " ".join((done.stdout + done.stderr).split()) or f"status {done.returncode}"
        raise ConfigError(
            [
                f"H2O_JKS_PASSWORD_FILE={str(password_file)!r}: keytool cannot open the "
                f"keystore {source} with it ({reason}): give the file with the password of "
                "the keystore of -jks"
            ]
        )


def _keytool() -> str:
    """The JDK's keytool: on PATH, else next to ``java``."""
    found = shutil.which("keytool")
    if found is not None:
        return found
    java = shutil.which("java")
    if java is not None:
        beside = Path(java).resolve().parent / "keytool"
        if beside.is_file():
            return str(beside)
    raise ConfigError(
        [
            "H2O_JKS_PASSWORD_FILE needs the JDK's keytool, which is neither on PATH nor next "
            "to java: install it, or unset H2O_JKS_PASSWORD_FILE"
        ]
    )
