"""Stand-in child: exit at once with the code given as the only argument."""

import sys

sys.exit(int(sys.argv[1]))
