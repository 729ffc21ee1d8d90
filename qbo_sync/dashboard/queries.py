"""What the status page reads, through the read-only monitor role (qbo_sync_monitor).

Every count is an indexed query: an entity's total from its (organization_id, qbo_id) unique
index, the records not synced from the partial indexes on qbo_sync_status <> 'synced' (migration
007, read through qbo_sync_record_counts), the queue from (organization_id, status), the history
and the chart from (organization_id, completed_at). No query loads the synced rows themselves.

API calls are not recorded per call anywhere the monitor may read (qbo_sync.pacer holds the
pacing state only): each job's history row has the calls it made (summary.qbo_calls), so calls
per hour are summed from the history, counted in the hour the job ended.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

ENTITIES = ("customers", "items", "invoices", "payments")
APP_TABLE = {
    "customers": "customer_profile",
    "items": "item_record",
    "invoices": "invoice_record",
    "payments": "invoice_payment",
}
#: record states other than synced, as qbo_sync_status holds them
UNSYNCED_STATES = ("pending", "held", "error", "conflict")
#: Intuit's published limit per realm and app when the setting pacing.limits does not say
DEFAULT_PER_MINUTE = 500

Row = dict[str, Any]


async def _rows(conn: AsyncConnection, query: str | sql.Composed, params: Any = ()) -> list[Row]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


OVERVIEW = """
SELECT o.id AS organization_id, o.name AS organization_name,
       s.realm_id, s.company_name, s.environment, s.is_active, s.inactive_reason,
       s.token_status, s.qbo_refresh_token_expires_at, s.reconnect_by, s.token_warning,
       s.qbo_refresh_token_expires_at - now() AS refresh_token_life,
       coalesce(s.pending_jobs, 0) AS pending_jobs,
       coalesce(s.processing_jobs, 0) AS processing_jobs,
       coalesce(s.failed_jobs, 0) AS failed_jobs,
       s.last_successful_sync_at, s.last_sync_at, s.last_sync_status,
       coalesce(r.pending, 0) AS pending_records,
       coalesce(r.problems, 0) AS problem_records
  FROM public.organizations AS o
  LEFT JOIN public.qbo_sync_status AS s ON s.organization_id = o.id
  LEFT JOIN (SELECT c.organization_id,
                    sum(c.records) FILTER (WHERE c.state = 'pending') AS pending,
                    sum(c.records) FILTER (WHERE c.state <> 'pending') AS problems
               FROM public.qbo_sync_record_counts AS c
              GROUP BY c.organization_id) AS r ON r.organization_id = o.id
 WHERE (%(org)s::uuid IS NULL OR o.id = %(org)s::uuid)
 ORDER BY o.name, o.id
"""


async def overview(conn: AsyncConnection, only: uuid.UUID | None = None) -> list[Row]:
    """Every organization (or `only`): connection, token life, backlog, errors, last sync."""
    return await _rows(conn, OVERVIEW, {"org": only})


CONNECTION = """
SELECT o.id AS organization_id, o.name AS organization_name,
       c.realm_id, c.company_name, c.environment, c.is_active, c.inactive_reason,
       c.connected_at, c.last_refreshed_at, c.last_refresh_error, c.refresh_failure_count,
       c.qbo_token_expires_at, c.qbo_refresh_token_expires_at,
       c.qbo_refresh_token_hard_expires_at,
       s.token_status, s.token_warning, s.pending_jobs, s.processing_jobs, s.failed_jobs,
       s.last_successful_sync_at, s.last_sync_at, s.last_sync_status,
       c.qbo_refresh_token_expires_at - now() AS refresh_token_life,
       c.qbo_refresh_token_hard_expires_at - now() AS hard_expiry_life,
       c.qbo_token_expires_at - now() AS access_token_life
  FROM public.organizations AS o
  LEFT JOIN public.qbo_connection AS c ON c.organization_id = o.id
  LEFT JOIN public.qbo_sync_status AS s ON s.organization_id = o.id
 WHERE o.id = %s
"""


async def organization(conn: AsyncConnection, org: uuid.UUID) -> Row | None:
    """The organization with its connection and token status; None when there is none."""
    found = await _rows(conn, CONNECTION, (org,))
    return found[0] if found else None


def total_query(entity: str) -> sql.Composed:
    """How many rows of `entity` the organization has: an index-only scan of the
    (organization_id, qbo_id) unique index."""
    return sql.SQL(
        "SELECT count(*) AS total FROM public.{} AS t WHERE t.organization_id = %s"
    ).format(sql.Identifier(APP_TABLE[entity]))


UNSYNCED_COUNTS = """
SELECT c.entity, c.state, c.records
  FROM public.qbo_sync_record_counts AS c
 WHERE c.organization_id = %s
"""


async def entity_counts(conn: AsyncConnection, org: uuid.UUID) -> list[Row]:
    """Per entity: total, synced, pending, held, error and conflict counts."""
    counts: dict[str, Row] = {
        e: {"entity": e, "total": 0, "synced": 0, **dict.fromkeys(UNSYNCED_STATES, 0)}
        for e in ENTITIES
    }
    for entity in ENTITIES:
        counts[entity]["total"] = (await _rows(conn, total_query(entity), (org,)))[0]["total"]
    for row in await _rows(conn, UNSYNCED_COUNTS, (org,)):
        if row["entity"] in counts and row["state"] in UNSYNCED_STATES:
            counts[row["entity"]][row["state"]] = row["records"]
    for row in counts.values():
        row["synced"] = row["total"] - sum(row[s] for s in UNSYNCED_STATES)
    return list(counts.values())


QUEUE = """
SELECT q.id, q.sync_endpoint AS entity, q.direction, q.priority::text AS priority, q.status,
       q.source, q.attempts, q.max_attempts, q.run_at, q.created_at, q.started_at,
       q.completed_at, q.locked_by, q.last_error, q.last_error_code,
       cardinality(q.entity_ids) AS ids, q.progress
  FROM public.qbo_sync_queue AS q
 WHERE q.organization_id = %(org)s
   AND (q.status IN ('pending', 'processing')
        OR (q.status = 'failed' AND q.completed_at > now() - interval '1 day')
        OR (q.status IN ('completed', 'cancelled')
            AND q.completed_at > now() - interval '15 minutes'))
 ORDER BY CASE q.status WHEN 'processing' THEN 0 WHEN 'pending' THEN 1 WHEN 'failed' THEN 2
                        ELSE 3 END,
          q.completed_at DESC NULLS FIRST, q.run_at, q.created_at
 LIMIT %(limit)s
"""


async def queue(conn: AsyncConnection, org: uuid.UUID, limit: int = 100) -> list[Row]:
    """The live queue: jobs pending or processing, failed in the last day, finished lately."""
    return await _rows(conn, QUEUE, {"org": org, "limit": limit})


HISTORY = """
SELECT h.id, h.queue_job_id, h.sync_type, h.direction, h.entity_types, h.status,
       h.entity_count, h.success_count, h.failure_count, h.started_at, h.completed_at,
       h.error_summary, h.intuit_tid, (h.summary ->> 'qbo_calls')::integer AS qbo_calls
  FROM public.qbo_sync_history AS h
 WHERE h.organization_id = %s
 ORDER BY h.completed_at DESC NULLS LAST
 LIMIT %s
"""


async def history(conn: AsyncConnection, org: uuid.UUID, limit: int = 30) -> list[Row]:
    """The latest runs, with their errors and intuit_tid."""
    return await _rows(conn, HISTORY, (org, limit))


CONFLICTS = """
SELECT c.id, c.entity, c.local_id, c.qbo_id, c.fields, c.local_values, c.remote_values,
       c.base_values, c.policy, c.detected_at, c.detected_by
  FROM public.qbo_sync_conflict AS c
 WHERE c.organization_id = %s AND c.status = 'held'
 ORDER BY c.detected_at
 LIMIT %s
"""


async def conflicts(conn: AsyncConnection, org: uuid.UUID, limit: int = 50) -> list[Row]:
    """Held conflicts, each field with QBO's value and this database's side by side."""
    found = await _rows(conn, CONFLICTS, (org, limit))
    for row in found:
        fields = row["fields"] or sorted(set(row["local_values"]) | set(row["remote_values"]))
        row["sides"] = [
            {
                "field": f,
                "local": _shown(row["local_values"].get(f)),
                "qbo": _shown(row["remote_values"].get(f)),
                "base": _shown(row["base_values"].get(f)),
            }
            for f in fields
        ]
    return found


def _shown(value: Any) -> str:
    if value is None:
        return "(empty)"
    return value if isinstance(value, str) else json.dumps(value, default=str)


def failed_records_query(entity: str) -> sql.Composed:
    """Records of `entity` in error, held or in conflict, the latest first; the first condition is
    the partial index's predicate, so only the rows not synced are read."""
    return sql.SQL(
        """SELECT {entity}::text AS entity, t.id AS record_id, t.qbo_id, t.qbo_sync_status AS state,
                  t.qbo_sync_error_class AS error_class, t.qbo_sync_error_code AS error_code,
                  t.qbo_sync_error AS error_message, t.qbo_intuit_tid AS intuit_tid,
                  t.qbo_sync_attempts AS attempts, t.qbo_last_synced_at AS last_synced_at,
                  (SELECT c.id FROM public.qbo_sync_conflict AS c
                    WHERE c.organization_id = t.organization_id AND c.entity = {entity}
                      AND c.local_id = t.id AND c.status = 'held'
                    ORDER BY c.detected_at DESC LIMIT 1) AS conflict_id
             FROM public.{table} AS t
            WHERE t.organization_id = %(org)s
              AND t.qbo_sync_status <> 'synced'
              AND t.qbo_sync_status IN ('error', 'held', 'conflict')
              AND t.qbo_deleted_at IS NULL
            ORDER BY t.qbo_sync_attempts DESC, t.id
            LIMIT %(limit)s"""
    ).format(entity=sql.Literal(entity), table=sql.Identifier(APP_TABLE[entity]))


async def failed_records(conn: AsyncConnection, org: uuid.UUID, limit: int = 50) -> list[Row]:
    """Records a person must look at (error, held, conflict), at most `limit` per entity."""
    found: list[Row] = []
    for entity in ENTITIES:
        found += await _rows(conn, failed_records_query(entity), {"org": org, "limit": limit})
    return found


ACTIVITY = """
SELECT date_trunc('hour', h.completed_at) AS hour,
       count(*) FILTER (WHERE h.status = 'completed') AS completed,
       count(*) FILTER (WHERE h.status IN ('failed', 'partial')) AS failed,
       coalesce(sum((h.summary ->> 'qbo_calls')::integer), 0) AS qbo_calls
  FROM public.qbo_sync_history AS h
 WHERE h.organization_id = %s AND h.completed_at > now() - interval '24 hours'
 GROUP BY 1
 ORDER BY 1
"""
PER_MINUTE_LIMIT = "SELECT s.value FROM qbo_sync.settings AS s WHERE s.key = 'pacing.limits'"
NOW_HOUR = "SELECT date_trunc('hour', now()) AS hour"


async def activity(conn: AsyncConnection, org: uuid.UUID) -> Row:
    """The last 24 hours, hour by hour: jobs completed and failed, QBO calls made; and QBO's
    limit per hour for the realm (pacing.limits' per_minute, Intuit's 500 by default, x 60)."""
    by_hour = {r["hour"]: r for r in await _rows(conn, ACTIVITY, (org,))}
    now_hour = (await _rows(conn, NOW_HOUR))[0]["hour"]
    limits = await _rows(conn, PER_MINUTE_LIMIT)
    per_minute = DEFAULT_PER_MINUTE
    if limits:
        try:
            per_minute = int(json.loads(limits[0]["value"] or "{}").get("per_minute", per_minute))
        except (ValueError, TypeError, AttributeError):
            pass
    hours = []
    for back in range(23, -1, -1):
        hour = now_hour - timedelta(hours=back)
        row = by_hour.get(hour, {})
        hours.append(
            {
                "hour": hour,
                "completed": int(row.get("completed", 0)),
                "failed": int(row.get("failed", 0)),
                "qbo_calls": int(row.get("qbo_calls", 0)),
            }
        )
    return {"hours": hours, "per_minute": per_minute, "per_hour": per_minute * 60}
