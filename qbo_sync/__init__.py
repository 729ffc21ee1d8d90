"""qbo-sync: two-way sync between PostgreSQL and QuickBooks Online, built inside PostgreSQL.

This package is the operator side: the installer, the local development cluster and the
`qbo-sync` command. The in-database code lives in `plpython/qbo_sync_db`.
"""

from qbo_sync_db import __version__

__all__ = ["__version__"]
