"""Keeping OpenSSL out of the long-lived processes: ``run`` and ``sidecar``.

The entrypoint lives as long as the pod, beside H2O, so what it imports it carries for good
(``bench/footprint.py`` measures it). Unless H2O serves HTTPS it never uses TLS: it serves the
kubelet over plain HTTP, asks the local H2O node and the peers' probe ports over plain HTTP,
and queries DNS over UDP and TCP. Nor does it hash anything. Yet OpenSSL made up nearly 8 MB
of its 44 MB resident: asyncio, aiohttp and dnspython import ``ssl`` whenever it is there,
aiohttp then builds two SSL contexts holding the system's CA bundle, and ``hashlib`` loads
libcrypto through ``_hashlib``.

All of them work without those two modules, as on a Python built without OpenSSL: they catch
the ImportError, and ``hashlib`` falls back to CPython's own md5, sha1, sha2, sha3 and blake2.
Marking the modules absent in ``sys.modules`` before anything imports them makes every
``import ssl`` and ``import _hashlib`` fail that way. A process that already has them (a test
run, a library user's program) keeps them: only a fresh ``run`` or ``sidecar`` does without.

When H2O serves HTTPS (``-jks``, ``H2O_REST_CA_FILE``: ``config/rest_security.py``) the
watcher needs ``ssl``, so the CLI does not call ``keep_openssl_out`` at all and the pod carries
OpenSSL.
"""

from __future__ import annotations

import logging
import sys


def keep_openssl_out() -> None:
    """Make ``ssl`` and ``_hashlib`` unimportable in this process, where that is safe.

    Call it before anything imports asyncio, aiohttp, dnspython or hashlib. ``_hashlib`` stays
    importable when this Python has no built-in implementation of a hash hashlib guarantees
    (builds that take them all from OpenSSL, as for FIPS): ``from hashlib import md5`` in
    aiohttp would fail there.
    """
    if "ssl" not in sys.modules:
        sys.modules["ssl"] = None  # type: ignore[assignment]
    if "_hashlib" in sys.modules or "hashlib" in sys.modules:
        return
    sys.modules["_hashlib"] = None  # type: ignore[assignment]
    # hashlib logs an error for each guaranteed hash it cannot build; the check below decides.
    logging.disable(logging.CRITICAL)
    try:
        import hashlib  # noqa: PLC0415
    finally:
        logging.disable(logging.NOTSET)
    if not all(hasattr(hashlib, name) for name in hashlib.algorithms_guaranteed):
        # Forget both, so that the next ``import hashlib`` uses OpenSSL after all.
        del sys.modules["hashlib"], sys.modules["_hashlib"]
