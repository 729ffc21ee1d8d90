"""`python -m listener`: the same as `qbo-sync listen`."""

import sys

from listener.app import main

sys.exit(main())
