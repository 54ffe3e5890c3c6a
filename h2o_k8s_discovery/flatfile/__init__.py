"""The H2O flatfile: the peers as ``ip:port`` lines, as a plain file or as a named pipe.

``format`` renders and parses the lines (pure) and writes the file atomically; ``pipe`` is the
same content through a named pipe, for a JVM started before its peers are known.

The one non-obvious decision: every line carries its port and an IP, never a hostname. H2O
gives a line without a port the previous line's, and resolves hostnames once at parse time: an
unresolvable one kills the JVM.
"""
