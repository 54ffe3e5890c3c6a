"""A fault for the entrypoint under test: one function of the package raises, nothing else.

Put on a ``run`` process's PYTHONPATH by ``tests/reliability/test_crash.py``; Python imports
it at start-up, before the package. ``ENTRYPOINT_FAULT`` names where the bug strikes:

- ``lifecycle``: writing the plain flatfile after the early-started JVM got its peers (the
  main path of ``run``, with the JVM running);
- ``watcher``: the first ``/3/Cloud`` answer (a background task, with the JVM running);
- ``status``: the body of ``GET /status`` (an HTTP handler).

Nothing this imports pulls in ``ssl`` or asyncio, so the footprint stays as in a real pod.
"""

from __future__ import annotations

import os
from typing import Any

FAULT = os.environ.get("ENTRYPOINT_FAULT")


class InjectedFault(RuntimeError):
    """The bug this module plants."""


def _raise(*_args: Any, **_kwargs: Any) -> None:
    raise InjectedFault(f"injected fault ({FAULT})")


if FAULT == "lifecycle":
    from h2o_k8s_discovery.flatfile import format as flatfile_format

    flatfile_format.write_flatfile = _raise
elif FAULT == "watcher":
    from h2o_k8s_discovery.server.node_state import NodeState

    NodeState.observe_cloud = _raise  # type: ignore[method-assign]
elif FAULT == "status":
    from h2o_k8s_discovery.server.node_state import NodeState

    NodeState.describe = _raise  # type: ignore[method-assign, assignment]
