"""Pushing local changes to QBO: customers, items, invoices with their lines, and payments (the
batch endpoint, conflicts and the lookup of creates whose outcome is unknown come next).

For each row waiting to be pushed (qbo_sync.rows_to_push):
* a row QBO has never seen is created, with a `requestid` stored with the row before the request
  is sent (qbo_sync.create_requestid, committed first) and reused on every retry, of the call and
  of the job: QBO answers a resent create with the object it made the first time;
* a row QBO has is updated (sparse, with its stored SyncToken);
* QBO's answer (Id, SyncToken, timestamps, its read-only values) is stored with the version that
  was read, so a change made meanwhile stays pending (qbo_sync.record_pushed);
* a validation or business fault marks that row 'error' with QBO's message and the push goes on
  with the others; anything else (throttling, 5xx, timeouts after retries) fails the job, which
  is retried and resumes with the rows still waiting;
* an invoice or payment whose customer, items or invoice QBO does not have yet is held (left
  pending, the reason in qbo_sync_error) rather than sent to fail; an invoice's lines get the Ids
  QBO gave them.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from qbo_sync_db import client, db, mapping
from qbo_sync_db.errors import QboRequestRejected

ROWS = "SELECT row::text AS row FROM qbo_sync.rows_to_push($1, $2, $3, $4) AS row"
LINES = "SELECT qbo_sync.record_pushed_lines($1, $2, $3)"
REQUESTID = "SELECT qbo_sync.create_requestid($1, $2, $3)::text AS requestid"
RECORD = "SELECT qbo_sync.record_pushed($1, $2, $3, $4, $5::jsonb, $6) AS done"
PROBLEM = "SELECT qbo_sync.record_push_problem($1, $2, $3, $4, $5)"

#: rows read per round (each round is read again after it is pushed)
ROUND = 100


class Pusher:
    """Pushes one organization's changed rows of an entity (one job)."""

    def __init__(self, ctx: Any, counts: dict[str, Any]) -> None:
        self.ctx = ctx
        self.plpy = ctx.plpy
        self.org = ctx.organization_id
        self.counts = counts
        for key in ("created", "pushed_updates", "refused", "held"):
            counts.setdefault(key, 0)

    def push(self, entity: str) -> dict[str, Any]:
        spec = mapping.ENTITIES[entity]
        # what QBO computes is taken back from its answer, never sent
        columns = [f.column for f in spec.fields]
        if spec.derived is not None:
            columns += sorted(spec.derived({}))
        held: list[str] = []
        while True:
            rows = [
                json.loads(r["row"], parse_float=Decimal)
                for r in db.execute(
                    self.plpy,
                    ROWS,
                    ["uuid", "text", "integer", "uuid[]"],
                    [self.org, entity, ROUND, held],
                )
            ]
            if not rows:
                return self.counts
            for row in rows:
                reason = self._hold_reason(entity, row)
                if reason is not None:
                    self._problem(entity, row["id"], reason, refused=False)
                    held.append(row["id"])
                    self.counts["held"] += 1
                    continue
                self._push_row(entity, spec, row, columns)
            if self.ctx.time_is_up():
                self.counts["continues"] = True
                return self.counts

    def _problem(self, entity: str, row_id: str, message: str, *, refused: bool) -> None:
        """A row not sent through: refused by QBO (marked 'error') or held (left pending)."""
        db.execute(
            self.plpy,
            PROBLEM,
            ["uuid", "text", "uuid", "text", "boolean"],
            [self.org, entity, row_id, message, refused],
        )

    @staticmethod
    def _hold_reason(entity: str, row: dict[str, Any]) -> str | None:
        """Why a row cannot go to QBO yet (what it references is not there), or None."""
        if entity not in ("invoices", "payments"):
            return None
        what = entity[:-1]
        if row.get("customer_id") is None:
            return f"held: the {what} has no customer"
        if row.get("customer_id_qbo_id") is None:
            return "held: its customer is not in QBO yet (pushed first, then this)"
        if entity == "payments" and row.get("invoice_id") and row.get("invoice_id_qbo_id") is None:
            return "held: the invoice it pays is not in QBO yet (pushed first, then this)"
        if not all(line.get("item_known", True) for line in row.get("lines") or ()):
            return "held: an item of its lines is not in QBO yet (pushed first, then this)"
        return None

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
            body = mapping.to_qbo(entity, row, lines=_lines(entity, row))
            build = lambda c: client.create_request(c, spec.qbo_entity, body, requestid)  # noqa: E731
            counter = "created"
        else:
            # every value the row has, sparse: a value cleared locally is not sent as cleared
            # until the engine keeps each row's base values (the three-way merge)
            body = mapping.to_qbo(entity, row, lines=_lines(entity, row)) | {
                "Id": str(row["qbo_id"]),
                "SyncToken": str(row["qbo_sync_token"]),
            }
            requestid = client.new_requestid()
            build = lambda c: client.update_request(c, spec.qbo_entity, body, requestid)  # noqa: E731
            counter = "pushed_updates"
        try:
            answer = self.ctx.connection().send(build)
        except QboRequestRejected as refused:
            self._problem(entity, row["id"], refused.message, refused=True)
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
        if entity == "invoices":
            line_ids = [str(line["qbo_line_id"]) for line in mapping.invoice_lines(obj)]
            db.execute(
                self.plpy, LINES, ["uuid", "uuid", "text[]"], [self.org, row["id"], line_ids]
            )
        self.counts[counter] += 1
        self.counts["success_count"] += 1


def _lines(entity: str, row: dict[str, Any]) -> list[dict[str, Any]] | None:
    """An invoice's lines as mapping.line_to_qbo takes them (None for other entities)."""
    if entity != "invoices":
        return None
    return list(row.get("lines") or [])
