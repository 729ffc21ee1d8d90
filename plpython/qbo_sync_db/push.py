"""Pushing local changes to QBO: customers and items so far (invoices and payments, the batch
endpoint, conflicts and the lookup of creates whose outcome is unknown come next).

For each row waiting to be pushed (qbo_sync.rows_to_push):
* a row QBO has never seen is created, with a `requestid` stored with the row before the request
  is sent (qbo_sync.create_requestid, committed first) and reused on every retry, of the call and
  of the job: QBO answers a resent create with the object it made the first time;
* a row QBO has is updated (sparse, with its stored SyncToken);
* QBO's answer (Id, SyncToken, timestamps, its read-only values) is stored with the version that
  was read, so a change made meanwhile stays pending (qbo_sync.record_pushed);
* a validation or business fault marks that row 'error' with QBO's message and the push goes on
  with the others; anything else (throttling, 5xx, timeouts after retries) fails the job, which
  is retried and resumes with the rows still waiting.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from qbo_sync_db import client, db, mapping
from qbo_sync_db.errors import QboRequestRejected

ROWS = "SELECT row::text AS row FROM qbo_sync.rows_to_push($1, $2, $3) AS row"
REQUESTID = "SELECT qbo_sync.create_requestid($1, $2, $3)::text AS requestid"
RECORD = "SELECT qbo_sync.record_pushed($1, $2, $3, $4, $5::jsonb, $6) AS done"
REFUSED = "SELECT qbo_sync.record_push_error($1, $2, $3, $4)"

#: rows read per round (each round is read again after it is pushed)
ROUND = 100
PUSHABLE = frozenset({"customers", "items"})


class Pusher:
    """Pushes one organization's changed rows of an entity (one job)."""

    def __init__(self, ctx: Any, counts: dict[str, Any]) -> None:
        self.ctx = ctx
        self.plpy = ctx.plpy
        self.org = ctx.organization_id
        self.counts = counts
        for key in ("created", "pushed_updates", "refused"):
            counts.setdefault(key, 0)

    def push(self, entity: str) -> dict[str, Any]:
        if entity not in PUSHABLE:
            raise QboRequestRejected(
                f"pushing {entity} is not built yet (customers and items are)",
                hint="queue it with direction 'pull' for now",
            )
        spec = mapping.ENTITIES[entity]
        # what QBO computes is taken back from its answer, never sent
        columns = [f.column for f in spec.fields]
        while True:
            rows = [
                json.loads(r["row"], parse_float=Decimal)
                for r in db.execute(
                    self.plpy, ROWS, ["uuid", "text", "integer"], [self.org, entity, ROUND]
                )
            ]
            if not rows:
                return self.counts
            for row in rows:
                self._push_row(entity, spec, row, columns)
            if self.ctx.time_is_up():
                self.counts["continues"] = True
                return self.counts

    def _push_row(
        self, entity: str, spec: mapping.EntityMap, row: dict[str, Any], columns: list[str]
    ) -> None:
        key = [self.org, entity, row["id"]]
        self.counts["entity_count"] += 1
        if row.get("qbo_id") is None:
            requestid = db.execute(self.plpy, REQUESTID, ["uuid", "text", "uuid"], key)[0][
                "requestid"
            ]
            self.ctx.commit()  # stored before the request can leave
            body = mapping.to_qbo(entity, row)
            build = lambda c: client.create_request(c, spec.qbo_entity, body, requestid)  # noqa: E731
            counter = "created"
        else:
            # every value the row has, sparse: a value cleared locally is not sent as cleared
            # until the engine keeps each row's base values (the three-way merge)
            body = mapping.to_qbo(entity, row) | {
                "Id": str(row["qbo_id"]),
                "SyncToken": str(row["qbo_sync_token"]),
            }
            requestid = client.new_requestid()
            build = lambda c: client.update_request(c, spec.qbo_entity, body, requestid)  # noqa: E731
            counter = "pushed_updates"
        try:
            answer = self.ctx.connection().send(build)
        except QboRequestRejected as refused:
            db.execute(
                self.plpy, REFUSED, ["uuid", "text", "uuid", "text"], [*key, refused.message]
            )
            self.counts["refused"] += 1
            self.counts["failure_count"] += 1
            return
        obj = client.parse_entity(answer.data, spec.qbo_entity)
        pushed = mapping.from_qbo(entity, obj) | {"qbo_raw": obj}
        db.execute(
            self.plpy,
            RECORD,
            ["uuid", "text", "uuid", "bigint", "text", "text[]"],
            [*key, row["qbo_local_version"], json.dumps(pushed, default=str), columns],
        )
        self.counts[counter] += 1
        self.counts["success_count"] += 1
