"""A Kubernetes node simulated on one machine, for the tests and the benchmarks alike.

Pods are network namespaces on a bridge (``pods``), the cluster DNS a server on the bridge's
gateway (``dns``, or a real dnsmasq: ``dnsmasq``), the manifests those under docker/kubernetes
(``manifests``), H2O a real JVM (``h2o_jvm``). The one non-obvious decision: this lives outside
``tests`` so that ``bench`` can use it without importing the test suite, and outside the
product so that the wheel carries none of it; the test-only tools (the fault-injecting DNS
server, stand-in javas, the kubelet of the e2e tests) are in ``tests/support``.
"""
