"""The drift audit of one entity for one organization: does QBO hold what the local rows say?

Run by the engine for a pull job with payload {"audit": true} (public.qbo_sync_drift_audit and
the daily pg_cron job `qbo-drift-audit` queue them), on the local rows as they are (a change not
pulled yet is drift too, and the repair brings it). Cheap first, exact when needed:

1. COUNT queries in QBO (one call each): every object (name lists with `Active IN (true,
   false)`, as QBO leaves inactive ones out otherwise), and for invoices the open ones
   (`Balance > '0'`) and the zero-total ones (`TotalAmt = '0'`, voided ones among them; QBO has no
   void flag to filter on), for payments the zero-total ones. They are compared with the local
   rows linked to QBO and not deleted there, in the same slices.
2. Only when a count differs: the Id and SyncToken of every object (`SELECT Id, SyncToken FROM
   ...`, 1000 a page; TotalAmt too for invoices and payments, for the totals), compared with the
   local rows: objects missing here and objects newer in QBO (a higher SyncToken) are queued for
   a targeted pull (a refetch of those Ids, qbo_sync_db.engine), and local rows QBO no longer has
   are reported. Rows the application deleted whose deletion is not pushed yet count as here (a
   refetch must not bring them back). A slice that differs while every object is here at QBO's
   version is a local change not pushed yet, not drift.
   A change in QBO that leaves every count as it was (a renamed customer) is not something counts
   can see: CDC and webhooks bring those.
3. The result is a row of public.qbo_sync_drift (counts, totals when listed, missing Ids, the
   repair job) and the job's summary.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from qbo_sync_db import client, db, mapping

LOCAL_COUNTS = "SELECT qbo_sync.audit_local_counts($1, $2)::text AS counts"
LOCAL_TOKENS = "SELECT qbo_sync.audit_local_tokens($1, $2)::text AS tokens"
REPAIR = (
    "SELECT qbo_sync.enqueue($1, $2, 'pull', 'high', $3, 'audit', '{\"refetch\": true}')::text"
    " AS job_id"
)
RECORD = (
    "SELECT qbo_sync.record_drift($1, $2, $3, $4, $5::numeric, $6::numeric, $7, $8, $9::uuid,"
    " $10::jsonb)"
)

#: per entity: the slices counted besides "all": name → QBO condition (the local side is in
#: qbo_sync.audit_local_counts, under the same names)
SLICES: dict[str, dict[str, tuple[str, str, Any]]] = {
    "customers": {},
    "items": {},
    "invoices": {"open": ("Balance", ">", 0), "zero_total": ("TotalAmt", "=", 0)},
    "payments": {"zero_total": ("TotalAmt", "=", 0)},
}
NAME_LISTS = frozenset({"customers", "items"})
WITH_TOTALS = frozenset({"invoices", "payments"})
#: how many Ids the drift row and the summary list (the repair job has them all)
LISTED_IDS = 200


def run(ctx: Any, entity: str) -> dict[str, Any]:
    """Audit `entity` for the job's organization; returns what was found (also recorded)."""
    org = ctx.organization_id
    spec = mapping.ENTITIES[entity]
    qbo_counts = {
        name: _count(ctx, spec.qbo_entity, text) for name, text in count_queries(entity).items()
    }
    local = json.loads(
        db.execute(ctx.plpy, LOCAL_COUNTS, ["uuid", "text"], [org, entity])[0]["counts"]
    )
    local_counts = {name: int(local[name]) for name in qbo_counts}
    local_counts["all"] += int(local.get("pending_deletions") or 0)
    differing = sorted(n for n in qbo_counts if qbo_counts[n] != local_counts[n])
    result: dict[str, Any] = {
        "qbo_counts": qbo_counts,
        "local_counts": local_counts,
        "differing": differing,
        "drifted": False,
        "repair_job_id": None,
    }
    qbo_total: Decimal | None = None
    local_total = Decimal(str(local["total"])) if local.get("total") is not None else None
    missing_here: list[str] = []
    if differing:
        listed, qbo_total = _list(ctx, entity, spec.qbo_entity)
        tokens = json.loads(
            db.execute(ctx.plpy, LOCAL_TOKENS, ["uuid", "text"], [org, entity])[0]["tokens"]
        )
        missing_here = _sorted_ids(i for i in listed if i not in tokens)
        newer_ids = _sorted_ids(
            i for i, token in listed.items() if i in tokens and newer(token, tokens[i])
        )
        gone = _sorted_ids(i for i in tokens if i not in listed)
        repair = missing_here + newer_ids
        # a slice that differs while every object is here at QBO's version is a local change
        # not pushed yet (a payment's amount, say): not drift
        result.update(
            drifted=bool(repair or gone) or qbo_counts["all"] != local_counts["all"],
            missing_here=missing_here[:LISTED_IDS],
            newer_in_qbo=newer_ids[:LISTED_IDS],
            not_in_qbo=gone[:LISTED_IDS],
            counts={
                "missing_here": len(missing_here),
                "newer_in_qbo": len(newer_ids),
                "not_in_qbo": len(gone),
            },
        )
        if repair:
            job = db.execute(ctx.plpy, REPAIR, ["uuid", "text", "text[]"], [org, entity, repair])
            result["repair_job_id"] = job[0]["job_id"]
    detail = {k: v for k, v in result.items() if k not in ("drifted", "repair_job_id")}
    db.execute(
        ctx.plpy,
        RECORD,
        ["uuid", "text", "bigint", "bigint", "text", "text", "text[]", "boolean", "text", "text"],
        [
            org,
            entity,
            qbo_counts["all"],
            local_counts["all"],
            None if qbo_total is None else str(qbo_total),
            None if local_total is None else str(local_total),
            missing_here[:LISTED_IDS],
            result["drifted"],
            result["repair_job_id"],
            json.dumps(detail, default=str),
        ],
    )
    ctx.commit()
    if qbo_total is not None:
        result["qbo_total"] = str(qbo_total)
    return result


def _base(entity: str) -> list[tuple[str, str, Any]]:
    return [("Active", "IN", [True, False])] if entity in NAME_LISTS else []


def count_queries(entity: str) -> dict[str, str]:
    """The COUNT queries of `entity`: "all", then its slices."""
    qbo_entity = mapping.ENTITIES[entity].qbo_entity
    queries = {"all": client.select(qbo_entity, _base(entity), count=True)}
    for name, where in SLICES[entity].items():
        queries[name] = client.select(qbo_entity, [*_base(entity), where], count=True)
    return queries


def listing_query(entity: str) -> str:
    """Id and SyncToken (and TotalAmt for invoices and payments) of every object, by Id; paged
    by the caller."""
    fields = "Id, SyncToken" + (", TotalAmt" if entity in WITH_TOTALS else "")
    query = client.select(mapping.ENTITIES[entity].qbo_entity, _base(entity), ["Id"])
    return query.replace("SELECT * ", f"SELECT {fields} ", 1)


def _count(ctx: Any, qbo_entity: str, text: str) -> int:
    answer = ctx.connection().send(lambda company: client.query_request(company, text))
    total = client.parse_query(answer.data, qbo_entity).total_count
    return int(total or 0)


def _list(ctx: Any, entity: str, qbo_entity: str) -> tuple[dict[str, str | None], Decimal | None]:
    """Id → SyncToken of every object (and the sum of TotalAmt for invoices and payments)."""
    query = listing_query(entity)
    listed: dict[str, str | None] = {}
    total = Decimal(0) if entity in WITH_TOTALS else None
    position: int | None = 1
    while position is not None:
        text = client.page(query, position, client.QUERY_MAX_RESULTS)
        answer = ctx.connection().send(
            lambda company, text=text: client.query_request(company, text)
        )
        rows = client.parse_query(answer.data, qbo_entity).rows
        for row in rows:
            token = row.get("SyncToken")
            listed[str(row.get("Id"))] = None if token is None else str(token)
            if total is not None:
                total += Decimal(str(row.get("TotalAmt") or 0))
        position = client.next_start(position, client.QUERY_MAX_RESULTS, len(rows))
        ctx.keep_lease()
    return listed, total


def newer(a: str | None, b: str | None) -> bool:
    """Whether SyncToken a is newer than b (as qbo_sync.sync_token_newer decides)."""
    if b is None or not b.isdigit():
        return True
    if a is None or not a.isdigit():
        return False
    return int(a) > int(b)


def _sorted_ids(ids: Any) -> list[str]:
    return sorted(ids, key=lambda i: (len(i), i))
