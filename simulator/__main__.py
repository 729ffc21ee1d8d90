"""``python -m simulator``: run the QBO simulator server."""

import sys

from simulator.server import main

sys.exit(main())
