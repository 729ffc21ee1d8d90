"""Transaction control for the steps that commit as they go (a procedure started by CALL).

A job that calls QBO commits before every call: its reservation in the shared pacer must be
visible to every other backend before the request leaves, a 429's backoff must outlive the job,
a rotated refresh token must never be rolled back, and no row lock may be held across a network
call. PL/Python allows `plpy.commit()` only in a procedure, and a procedure that commits may not
carry `SET search_path`, so every transaction this object starts pins its own settings first:
`search_path = pg_catalog, pg_temp` (nothing the owner runs resolves through a schema another
role can write) and the step's `lock_timeout`. The pinning statement itself names
`pg_catalog.set_config` with typed parameters, so it resolves nothing through the caller's path.
A commit also releases the locks qbo_sync.lock_own_relations() took, so every new transaction
takes them again and checks that qbo-sync's tables in public are still its own (a table the
database owner dropped and replaced between two commits would otherwise run its triggers as the
owner).
"""

from __future__ import annotations

from typing import Any

from qbo_sync_db import db

PIN = (
    "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true),"
    " pg_catalog.set_config('lock_timeout', $1, true)"
)
#: qbo-sync's tables in public are still its own, and stay so until this transaction ends
#: (sql/idempotent/015_entities.sql): a commit releases the previous transaction's locks
CHECK_RELATIONS = "SELECT qbo_sync.lock_own_relations()"


class Transaction:
    """The running procedure's transaction: `commit()` and `rollback()` end it and start the next
    one with the settings pinned again."""

    def __init__(self, plpy: Any, lock_timeout_ms: int = 5000) -> None:
        self.plpy = plpy
        self.lock_timeout_ms = lock_timeout_ms
        self.commits = 0

    def pin(self, lock_timeout_ms: int | None = None, check_relations: bool = True) -> None:
        """Pin the search path and lock timeout for the rest of this transaction, and lock and
        check qbo-sync's tables in public (a transaction that touches none of them, like the
        pacer's decisions on qbo_sync.pacer, may skip that)."""
        timeout = self.lock_timeout_ms if lock_timeout_ms is None else lock_timeout_ms
        db.execute(self.plpy, PIN, ["text"], [f"{int(timeout)}ms"])
        if check_relations:
            db.execute(self.plpy, CHECK_RELATIONS, [], [])

    def commit(self, lock_timeout_ms: int | None = None, check_relations: bool = True) -> None:
        self.plpy.commit()
        self.commits += 1
        self.pin(lock_timeout_ms, check_relations)

    def rollback(self, lock_timeout_ms: int | None = None, check_relations: bool = True) -> None:
        self.plpy.rollback()
        self.pin(lock_timeout_ms, check_relations)
