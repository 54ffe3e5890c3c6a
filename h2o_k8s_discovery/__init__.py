"""Form H2O-3 clusters reliably on Kubernetes.

The library API: read ``Settings`` from the environment, ``discover_peers`` from a headless
Service's DNS records, and ``render_flatfile`` / ``write_flatfile`` for H2O's ``-flatfile``.

``discover_peers`` and ``LookupResult`` are imported on first use: they bring in asyncio,
dnspython and tenacity, which the ``sidecar`` command never needs and which ``run`` must import
only after keeping OpenSSL out (``footprint.py``). Importing the package, as every command does
first, stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from h2o_k8s_discovery.config.settings import LookupSettings, RecordType, Settings
from h2o_k8s_discovery.discovery.constraints import StopReason
from h2o_k8s_discovery.errors import (
    ConfigError,
    DnsQueryError,
    FlatfileError,
    H2OK8sDiscoveryError,
    LaunchError,
)
from h2o_k8s_discovery.flatfile.format import parse_flatfile, render_flatfile, write_flatfile
from h2o_k8s_discovery.peers import Peer

if TYPE_CHECKING:
    from h2o_k8s_discovery.discovery.lookup import LookupResult, discover_peers

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DnsQueryError",
    "FlatfileError",
    "H2OK8sDiscoveryError",
    "LaunchError",
    "LookupResult",
    "LookupSettings",
    "Peer",
    "RecordType",
    "Settings",
    "StopReason",
    "__version__",
    "discover_peers",
    "parse_flatfile",
    "render_flatfile",
    "write_flatfile",
]

#: Names of the API that live in a module imported on first use.
_LAZY = {
    "LookupResult": "h2o_k8s_discovery.discovery.lookup",
    "discover_peers": "h2o_k8s_discovery.discovery.lookup",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
