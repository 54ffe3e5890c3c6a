"""The cloud as the local H2O node reports it, and what this pod concludes from that.

``status`` parses ``GET /3/Cloud`` into a frozen ``CloudStatus`` (no I/O), ``client`` reads it
over HTTP or HTTPS, ``members`` checks with a TCP connect that every member of a formed cloud is
still there, ``watch`` runs both for as long as the pod lives, and ``view`` holds what follows:
the phase, the latched formation, the damage.

The one non-obvious decision: formation and damage are latched. Once the full, healthy cloud has
formed this node's role is fixed, so readiness cannot flap while H2O's views converge; once a
member is lost on evidence the cloud stays damaged, because H2O cannot take a member back.
"""
