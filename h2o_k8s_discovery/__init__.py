"""Form H2O-3 clusters reliably on Kubernetes.

The library API: read ``Settings`` from the environment, ``discover_peers`` from a headless
Service's DNS records, and ``render_flatfile`` / ``write_flatfile`` for H2O's ``-flatfile``.
"""

from h2o_k8s_discovery.constraints import StopReason
from h2o_k8s_discovery.discovery import LookupResult, discover_peers
from h2o_k8s_discovery.errors import (
    ConfigError,
    DnsQueryError,
    FlatfileError,
    H2OK8sDiscoveryError,
    LaunchError,
)
from h2o_k8s_discovery.flatfile import parse_flatfile, render_flatfile, write_flatfile
from h2o_k8s_discovery.peers import Peer
from h2o_k8s_discovery.settings import LookupSettings, RecordType, Settings

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
