"""The ``h2o-k8s-discovery`` command and its subcommands.

``cli`` parses the arguments, sets up logging and maps errors to exit statuses; ``run`` is the
container entrypoint (probes, lookup, agreement, flatfile, the JVM as PID 1, the watch), a walk
through the states of ``lifecycle``; ``sidecar`` serves the probes for a stock H2O container;
``demo`` runs a real cluster on this machine behind ``demo_dns``, a small DNS server that plays
the headless Service.

The one non-obvious decision: each command imports what it runs only once it is chosen. What a
long-lived command imports it carries for the life of the pod, and ``run`` must be able to keep
OpenSSL out of the process (``footprint``) before asyncio, aiohttp or dnspython is imported.
"""
