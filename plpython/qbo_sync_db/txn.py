"""Transaction control for the steps that commit as they go (a procedure started by CALL).

A job that calls QBO commits before every call: its reservation in the shared pacer must be
visible to every other backend before the request leaves, a 429's backoff must outlive the job,
a rotated refresh token must never be rolled back, and no row lock may be held across a network
call. PL/Python allows `plpy.commit()` only in a procedure, and a procedure that commits may not
carry `SET search_path`, so every transaction this object starts pins its own settings first:
`search_path = pg_catalog, pg_temp` (nothing the owner runs resolves through a schema another
role can write) and the step's `lock_timeout`. The pinning statement itself names
`pg_catalog.set_config` with typed parameters, so it resolves nothing through the caller's path.
"""

from __future__ import annotations

from typing import Any

from qbo_sync_db import db

PIN = (
    "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true),"
    " pg_catalog.set_config('lock_timeout', $1, true)"
)


class Transaction:
    """The running procedure's transaction: `commit()` and `rollback()` end it and start the next
    one with the settings pinned again."""

    def __init__(self, plpy: Any, lock_timeout_ms: int = 5000) -> None:
        self.plpy = plpy
        self.lock_timeout_ms = lock_timeout_ms
        self.commits = 0

    def pin(self, lock_timeout_ms: int | None = None) -> None:
        """Pin the search path and lock timeout for the rest of this transaction."""
        timeout = self.lock_timeout_ms if lock_timeout_ms is None else lock_timeout_ms
        db.execute(self.plpy, PIN, ["text"], [f"{int(timeout)}ms"])

    def commit(self) -> None:
        self.plpy.commit()
        self.commits += 1
        self.pin()

    def rollback(self) -> None:
        self.plpy.rollback()
        self.pin()
