"""What the pod was told: settings from the environment, the h2o.jar arguments, REST access.

Everything ``run`` and ``sidecar`` are configured with is read here, once, before anything
starts: ``settings`` (H2O's own variable names, frozen dataclasses), ``h2o_args`` (the
arguments after ``run --`` that contradict ``run`` or that it must follow), ``rest_security``
(the login and TLS material the watcher needs to read a secured H2O) and ``redaction`` (secrets
kept out of logs and messages).

The one non-obvious decision: every problem is collected into one ``ConfigError`` that names the
variable, the value received and the fix, and the command exits 2 before it binds a port or
starts a JVM; H2O itself would silently ignore most of these values.
"""
