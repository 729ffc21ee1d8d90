"""Who held the lock an installation statement gave up waiting for (`lock_timeout`), in one line.

The installation sets `lock_timeout` so that a session idle in a transaction cannot stall it, and
everything queued behind its lock request, without limit. When a statement times out the
installation is rolled back, which releases its own locks; the sessions that made it wait still
hold theirs. So, afterwards, the relations the failing statement names (qualified, as the SQL files
write them; PostgreSQL's context names the row-locked table or the statement a DO block ran) are
looked up in pg_locks, and their holders described from pg_stat_activity: pid, application_name,
user, state and how long their transaction has been open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg

#: A relation of the schemas qbo-sync installs into, written qualified.
QUALIFIED_RELATION = re.compile(r"\b(?:public|qbo_sync)\.[A-Za-z_][A-Za-z_0-9]*\b")

#: The table of a row lock, in PostgreSQL's context: `while locking tuple (0,2) in relation "x"`.
ROW_LOCK_RELATION = re.compile(r'in relation "([A-Za-z_][A-Za-z_0-9]*)"')

#: At most this many holders are named.
MAX_HOLDERS = 3

#: Sessions with a granted lock on one of `relations` (all relations of public and qbo_sync when
#: the list is empty), the oldest transaction first.
HOLDERS_SQL = """
SELECT a.pid, a.application_name, a.usename, a.state,
       round(extract(epoch FROM now() - a.xact_start))::bigint,
       string_agg(DISTINCT format('%%I.%%I', n.nspname, c.relname), ', ')
  FROM pg_locks AS l
  JOIN pg_stat_activity AS a ON a.pid = l.pid
  JOIN pg_class AS c ON c.oid = l.relation
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
 WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
   AND l.database = (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database())
   AND CASE WHEN cardinality(%(relations)s::text[]) = 0
            THEN n.nspname IN ('public', 'qbo_sync')
            ELSE l.relation IN (SELECT to_regclass(r) FROM unnest(%(relations)s::text[]) AS r) END
 GROUP BY a.pid, a.application_name, a.usename, a.state, a.xact_start
 ORDER BY a.xact_start NULLS LAST, a.pid
 LIMIT %(limit)s
"""


@dataclass
class Holder:
    """A session holding a lock on one of the relations the installation needed."""

    pid: int
    application_name: str
    user: str
    state: str | None
    transaction_seconds: int | None
    relations: str

    def describe(self) -> str:
        parts = [
            f"application_name {self.application_name or '(none)'}",
            f"user {self.user}",
            self.state or "state unknown",
        ]
        if self.transaction_seconds is not None:
            parts.append(f"transaction open {self.transaction_seconds} s")
        return f"pid {self.pid} ({', '.join(parts)})"


def named_relations(context: str | None, statement: str | None) -> list[str]:
    """The relations a timed-out statement waited for, as precisely as PostgreSQL's context
    (the row-locked table, or what a DO block or function ran) or else the statement tells."""
    context = context or ""
    row_locked = ROW_LOCK_RELATION.findall(context)
    if row_locked:
        return [f"{schema}.{name}" for name in row_locked for schema in ("public", "qbo_sync")]
    for text in (context, statement or ""):
        names = list(dict.fromkeys(QUALIFIED_RELATION.findall(text)))
        if names:
            return names
    return []


def lock_holders(conn: psycopg.Connection, relations: list[str]) -> list[Holder]:
    """Who holds a lock on `relations` (on any relation of public or qbo_sync when none of them is
    held, or none is known). Runs after the rollback, when only the others' locks are left."""
    for candidates in [relations, []] if relations else [[]]:
        rows = conn.execute(HOLDERS_SQL, {"relations": candidates, "limit": MAX_HOLDERS}).fetchall()
        if rows:
            return [Holder(*row) for row in rows]
    return []


def describe_lock_timeout(
    conn: psycopg.Connection,
    error: psycopg.Error,
    statement: str | None,
    where: str | None,
    lock_timeout: float,
) -> str:
    """One line: how long the installation waited, for which relation, in which statement, who
    holds it, and what to do; that nothing was changed."""
    holders = lock_holders(conn, named_relations(error.diag.context, statement))
    waited = f"waited {lock_timeout:g} s for a lock"
    if holders:
        waited += " on " + ", ".join(dict.fromkeys(h.relations for h in holders))
    if where:
        waited += f" ({where})"
    retry = "run qbo-sync install again, or let it wait longer with --lock-timeout SECONDS"
    if not holders:
        return (
            f"installation failed, nothing was changed: {waited} that another session held; "
            f"find it in pg_locks and pg_stat_activity, end its transaction, and {retry}"
        )
    sessions = "; ".join(h.describe() for h in holders)
    terminate = ", ".join(f"SELECT pg_terminate_backend({h.pid})" for h in holders)
    that = "that transaction" if len(holders) == 1 else "those transactions"
    return (
        f"installation failed, nothing was changed: {waited}, held by {sessions}; "
        f"end {that} (or {terminate}) and {retry}"
    )
