"""The H2O JVM: its jar, its command line, its start-up cache, and the process that runs it.

``command`` builds the command line and the environment, ``jar`` fetches and caches h2o.jar
(``python -m h2o_k8s_discovery.jvm.jar``), ``jar_identity`` tells one jar from another,
``startup_cache`` and ``startup_prepare`` use and build the per-jar cache of native libraries
and class archive (``class_archive`` says when an archive may be used, ``archive_proof`` writes
and proves one at build time), ``keystore`` keeps the keystore's password off H2O's command
line, and ``supervisor`` spawns the JVM as PID 1 must (own process group, every signal
forwarded, every child reaped).

The one non-obvious decision: the JVM is started without H2O's four Kubernetes variables in its
environment; an h2o.jar that sees them runs its own discovery and binds the API port itself.
"""
