"""The pod's HTTP server: Kubernetes' probes, ``/status``, ``/peers`` and ``/metrics``.

``probes`` is the aiohttp application; ``node_state`` is what it answers from (the cloud view
of ``cloud/view.py``, the ``counters`` behind ``/metrics``, the process's own facts);
``metrics`` renders the OpenMetrics text.

The one non-obvious decision: every answer is read from the in-memory state the lifecycle
keeps; no request does work of its own (no call to H2O, no DNS), so a kubelet probing every
second costs nothing and a stalled JVM cannot stall the probes.
"""
