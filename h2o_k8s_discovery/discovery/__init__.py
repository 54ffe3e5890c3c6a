"""Finding the peers: DNS polls of the headless Service until the rules say the set is final.

``query`` asks once (one time-limited DNS query per attempt), ``lookup`` polls until the
``constraints`` (pure rules over the peers seen and the time spent, the clock passed in) end it,
with the ``backoff`` after errors; ``ip_family`` settles the one address family of the lookup
and ``own_address`` this pod's own IP; ``agreement`` makes the pods agree on the set before any
of them starts H2O, refreshing it from DNS meanwhile.

The one non-obvious decision: every poll is a fresh snapshot, sorted, never accumulated (H2O's
own discovery keeps the addresses of pods that went away forever), and once the pods exchange
their sets an empty or failed DNS answer never shrinks the set they agree on.
"""
