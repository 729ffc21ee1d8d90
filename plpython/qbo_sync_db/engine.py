"""The sync engine's job handler (qbo_sync.entity.handler of every entity): a pull job pulls
(qbo_sync_db.pull), a push job pushes (qbo_sync_db.push), a 'both' job pulls and then pushes
what is still waiting (a pulled change never overwrites a local one: that row is held, and
pushed).

Two kinds of pull job carry more in their payload:
* `{"refetch": true}` with entity_ids (QBO Ids): instead of the usual pull, those objects are
  read from QBO by Id and applied (qbo_sync_skip_record's refetch, the drift audit's repair).
  Such jobs fold only into each other (qbo_sync.enqueue), never into a webhook's pull.
* `{"audit": true}`: instead of the usual pull, the drift audit of the entity
  (qbo_sync_db.audit) compares QBO's counts with the local rows as they are and queues a refetch
  of what differs (a change not pulled yet is a difference too, and the refetch brings it).

The summary, which the worker writes to qbo_sync_history, holds the counts and the entity's
records left in error, held or in conflict, each with QBO's code, message and intuit_tid.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from qbo_sync_db import audit, client, db, mapping
from qbo_sync_db.pull import FETCH_CHUNK, NAME_LISTS, Puller
from qbo_sync_db.push import Pusher

RECORD_ERRORS = "SELECT qbo_sync.record_errors($1, $2)::text AS errors"


def run(ctx: Any) -> dict[str, Any]:
    entity = ctx.job["sync_endpoint"]
    direction = ctx.job.get("direction") or "both"
    payload = ctx.job.get("payload") or {}
    puller = Puller(ctx)
    counts = puller.counts
    ids = ctx.job.get("entity_ids")
    if direction in ("pull", "both") and payload.get("audit"):
        counts["audit"] = audit.run(ctx, entity)
    elif direction in ("pull", "both") and payload.get("refetch") and ids:
        counts["refetched"] = refetch(puller, entity, ids)
        puller.refresh_balances()
    elif direction in ("pull", "both") and ids and _webhook_fetch(ctx.job, ids):
        # QBO's webhooks name the objects that changed: read just those (gone ones are marked)
        counts["mode"] = "webhook objects"
        counts["refetched"] = refetch(puller, entity, ids, mark_gone=True)
        puller.refresh_balances()
    elif direction in ("pull", "both"):
        puller.pull(entity)
        if counts.get("continues"):
            return ctx.summary(**counts)
    if direction in ("push", "both"):
        Pusher(ctx, counts).push(entity)
    errors = json.loads(
        db.execute(ctx.plpy, RECORD_ERRORS, ["uuid", "text"], [ctx.organization_id, entity])[0][
            "errors"
        ]
    )
    if errors["count"]:
        counts["record_errors"] = errors
    return ctx.summary(**counts)


def _webhook_fetch(job: dict[str, Any], ids: Sequence[str]) -> bool:
    """Whether a pull job is a webhook's with few enough Ids to read them one query at a time
    (more than one query's worth: CDC, one call for everything that changed)."""
    return job.get("source") == "webhook" and 0 < len(set(ids)) <= FETCH_CHUNK


def refetch(puller: Puller, entity: str, qbo_ids: Sequence[str], *, mark_gone: bool = False) -> int:
    """Read the objects `qbo_ids` of `entity` from QBO by Id (`Id IN (...)`, FETCH_CHUNK at a
    time; name lists with inactive ones too) and apply them; returns how many QBO answered. An
    Id QBO no longer has is marked deleted when `mark_gone` (a webhook said it changed, and QBO
    answers every object it has, inactive and voided ones included: it was deleted or merged
    away); otherwise it is left for the next pull's deletions."""
    spec = mapping.ENTITIES[entity]
    ids = sorted({str(i) for i in qbo_ids}, key=lambda i: (len(i), i))
    fetched = 0
    for start in range(0, len(ids), FETCH_CHUNK):
        where: list[tuple[str, str, Any]] = [("Id", "IN", ids[start : start + FETCH_CHUNK])]
        if entity in NAME_LISTS:
            where.append(("Active", "IN", [True, False]))
        text = client.page(client.select(spec.qbo_entity, where), 1, client.QUERY_MAX_RESULTS)
        answer = puller.ctx.connection().send(
            lambda company, text=text: client.query_request(company, text)
        )
        objects = client.parse_query(answer.data, spec.qbo_entity).rows
        puller.apply(entity, objects)
        if mark_gone:
            answered = {str(obj.get("Id")) for obj in objects}
            gone = [i for i in ids[start : start + FETCH_CHUNK] if i not in answered]
            if gone:
                puller._apply_changes(entity, [], [{"Id": i} for i in gone])
        puller.publish()
        puller.ctx.commit()
        fetched += len(objects)
    return fetched
