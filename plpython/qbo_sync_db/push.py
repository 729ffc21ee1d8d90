"""Pushing local changes to QBO: customers, items, invoices with their lines, and payments; local
deletions, voids and inactivation; through the batch endpoint and single calls together.

A push job works one entity (the engine runs the jobs in dependency order: customers and items,
then invoices, then payments; items of one batch cannot see each other, so nothing in a batch
depends on another item of it). For that entity:

* local deletions (qbo_sync.local_deletion) go first: an invoice or payment is deleted in QBO
  (operation=delete with Id and SyncToken), a customer or item made inactive (QBO cannot delete
  name-list objects); a stale SyncToken is read again once; an object QBO already deleted is
  done; a deletion QBO refuses is kept with its attempts and last error;
* each changed row (qbo_sync.rows_to_push, 'pending' and 'held' ones) becomes one operation: a
  create (a row QBO has never seen), a void (a local invoice or payment marked is_voided that QBO
  has not voided), or a sparse update with the stored SyncToken (a customer or item made
  inactive sends Active false);
* an invoice or payment whose customer, items or invoice QBO does not have yet is held (status
  'held', class 'dependency') and tried again on the next push;
* operations go as batches of at most 30 (POST /batch) with single calls between them, in the
  ratio QBO's limits allow (40 batches and 500 requests a minute per realm and app: a batch then
  (500 - 40) / 40 = 11 single calls), so a realm's whole budget can be used: about 1,660
  operations a minute. The shared pacer counts a batch once toward the 500 and once toward the
  40 (docs/pacing.md);
* QBO's answer (Id, SyncToken, timestamps, line Ids, its totals) is stored with the version that
  was read (qbo_sync.record_pushed): a change made meanwhile stays pending and is not overwritten;
* a refusal (a validation or business fault) marks that row 'error' (class 'validation', QBO's
  code and intuit_tid, attempts counted) and the others go on; a throttled, transient or
  authorization failure of a request fails the job (retried by the queue) after noting its class
  on the rows it carried;
* a stale SyncToken (5010) on an update: QBO's object is read; when it already holds what was sent
  (our own update whose answer was lost) it is stored as pushed; otherwise
  qbo_sync_db.conflicts.merge_remote merges it into the row and says whether the row still has
  something to push (then it is pushed once more in this job), is synced, or waits for a person;
* after each request's answers are recorded, the job's progress is published (operations sent,
  accepted, failed: qbo_sync_db.progress), committed with them;
* 6240 (the name is taken) on a customer or item create: the QBO object of that name is linked
  to the row when no other row is linked to it (then the row's values are pushed to it as an
  update if they differ); otherwise a conflict is recorded for a person (qbo_sync_conflict,
  detected_by 'push', status 'held'; the row's status 'conflict').

Creates are made once in QBO:

* a single create carries the row's `requestid`, stored with the row, together with the time the
  create was first sent (qbo_create_sent_at), and committed before the request leaves; every
  resend of that create reuses it;
* the requestid of a batch (QBO takes one per batch request, none per item) is derived from what
  the batch carries: its operations, each row's version, attempts and SyncToken, each create's
  stored requestid (a UUID 5). A batch resent unchanged, by the transport or by a job that died
  before recording QBO's answer, has the same requestid and QBO answers it from its first answer;
  a batch of other rows, of rows merged after a 5010 (QBO's newer SyncTokens) or of rows that had
  a problem since (attempts), is another request, and so is every batch of deletions;
* because integrators report duplicates despite requestid, a request carrying a create is not
  resent blindly after an answer that never came (a timeout, a dropped connection, a 5xx): the
  transport gives it back, and a create whose outcome is unknown (qbo_create_sent_at set, no
  qbo_id) is LOOKED UP in QBO before it is sent again: customers by DisplayName, items by Name
  (both unique in QBO), invoices and payments by what was sent (CustomerRef, TxnDate, DocNumber
  when set, created since qbo_create_sent_at minus a margin, then every value of the body the
  engine sends, lines included; for a payment its TotalAmt). A match no other row is linked to
  is linked and stored like the answer to the create. A match another row is linked to (a pull
  brought it in before the lookup could run) is a conflict for a person, not a second object in
  QBO. Without a match the create is sent again (with its stored requestid);
* a create QBO refused drops its requestid (QBO answers a requestid it has seen with its first
  answer, a fault too), so the corrected row is a new request; so does one QBO answers 600
  (RequestId already exists) when the lookup found nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from qbo_sync_db import client, db, mapping
from qbo_sync_db.errors import (
    QboApiError,
    QboForbidden,
    QboReconnectNeeded,
    QboRequestRejected,
    QboServerError,
    QboSyncError,
    QboThrottled,
    QboUnauthorized,
    QboUnreachable,
)

try:  # the conflicts module merges QBO's object into a row (its owner may not have built it yet)
    from qbo_sync_db import conflicts
except ImportError:  # pragma: no cover - depends on what is installed
    conflicts = None  # type: ignore[assignment]

ROWS = "SELECT row::text AS row FROM qbo_sync.rows_to_push($1, $2, $3, $4) AS row"
LINES = "SELECT qbo_sync.record_pushed_lines($1, $2, $3, $4)"
PREPARE = (
    "SELECT row_id::text AS row_id, requestid::text AS requestid"
    " FROM qbo_sync.prepare_creates($1, $2, $3)"
)
RECORD = "SELECT qbo_sync.record_pushed($1, $2, $3, $4, $5::jsonb, $6, $7) AS done"
PROBLEM = "SELECT qbo_sync.record_push_problem($1, $2, $3, $4, $5, $6, $7, $8)"
LINKED = "SELECT qbo_sync.row_linked_to($1, $2, $3, $4)::text AS other"
CONFLICT = (
    "SELECT qbo_sync.record_push_conflict($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9, $10)"
)
DELETIONS = "SELECT qbo_id, qbo_sync_token FROM qbo_sync.deletions_to_push($1, $2, $3)"
DELETION_DONE = "SELECT qbo_sync.record_deletion_pushed($1, $2, $3, $4)"

#: rows read per round (each round is read again after it is pushed): three runs of a full
#: batch and the single calls after it under QBO's limits (see `plan`), 123 rows: a round that
#: ended on a part-filled batch would spend the 40 batches a minute on fewer operations
ROUND = 3 * (30 + (500 - 40) // 40)
#: QBO's clock and ours may differ: a lookup reaches this far before the first send
LOOKUP_MARGIN = timedelta(minutes=10)
#: requests carrying creates whose answer never came, in one job, before the job gives up
#: (failed, retried by the queue: the creates are looked up first then)
MAX_UNKNOWN_OUTCOMES = 3
#: the namespace of batch requestids (uuid5 of what the batch carries)
BATCH_NAMESPACE = uuid.UUID("6f1d1c8e-3b0f-5a53-9a57-0d1e8c4f7b21")
#: QBO's "Duplicate Name Exists", "Stale Object", "Object Not Found", "RequestId already exists"
DUPLICATE_NAME, STALE, NOT_FOUND, REQUESTID_USED = "6240", "5010", "610", "600"
NAME_FIELD = {"customers": "DisplayName", "items": "Name"}


def problem_class(error: QboSyncError) -> str:
    """The row's qbo_sync_error_class for a failure of the request that carried it."""
    if isinstance(error, QboThrottled):
        return "throttle"
    if isinstance(error, QboServerError | QboUnreachable):
        return "transient"
    if isinstance(error, QboUnauthorized | QboForbidden | QboReconnectNeeded):
        return "auth"
    return "validation"


def singles_per_batch(per_minute: int, batches_per_minute: int) -> int:
    """How many single calls go between two batches so both budgets run out together: with
    QBO's 500 requests and 40 batches a minute, (500 - 40) // 40 = 11."""
    if not per_minute or not batches_per_minute:
        return 0
    return max(0, (per_minute - batches_per_minute) // batches_per_minute)


def plan(count: int, per_batch: int, singles: int) -> list[tuple[str, int, int]]:
    """How `count` operations are sent: ("batch" | "single", start, end) runs, a batch of at most
    `per_batch`, then up to `singles` single calls, and so on; one operation alone goes single."""
    runs: list[tuple[str, int, int]] = []
    start = 0
    while start < count:
        if count - start == 1:
            runs.append(("single", start, start + 1))
            break
        end = min(count, start + per_batch)
        runs.append(("batch", start, end))
        start = end
        stop = min(count, start + singles)
        runs.extend(("single", i, i + 1) for i in range(start, stop))
        start = stop
    return runs


def sent_matches(sent: Any, remote: Any) -> bool:
    """Does QBO's object hold everything `sent` says (every key sent, nested, with an equal
    value; amounts compared as numbers; a Line list compared in order with QBO's lines of the
    same kinds)? Keys QBO adds (Ids, MetaData, names of references, tax) do not matter."""
    if isinstance(sent, Mapping):
        if not isinstance(remote, Mapping):
            return False
        for key, value in sent.items():
            if key in ("SyncToken", "sparse"):
                continue
            if key == "Line" and isinstance(value, list):
                kinds = {line.get("DetailType") for line in value if isinstance(line, Mapping)}
                theirs = [
                    line
                    for line in remote.get("Line") or ()
                    if isinstance(line, Mapping) and line.get("DetailType") in kinds
                ]
                if len(theirs) != len(value) or not all(
                    sent_matches(a, b) for a, b in zip(value, theirs, strict=True)
                ):
                    return False
                continue
            if not sent_matches(value, remote.get(key)):
                return False
        return True
    if isinstance(sent, list):
        return (
            isinstance(remote, list)
            and len(sent) == len(remote)
            and all(sent_matches(a, b) for a, b in zip(sent, remote, strict=True))
        )
    if isinstance(sent, bool) or isinstance(remote, bool):
        return sent is remote or sent == remote and type(sent) is type(remote)
    if isinstance(sent, int | float | Decimal):
        try:
            return remote is not None and Decimal(str(sent)) == Decimal(str(remote))
        except ArithmeticError:
            return False
    if sent is None:
        return remote in (None, "")
    return sent == remote


@dataclass
class Op:
    """One write to QBO: a row's create, update or void, or a local deletion's delete or
    deactivation. `body` is what is sent (create/update) or Id and SyncToken."""

    kind: str
    qbo_entity: str
    body: dict[str, Any]
    row: dict[str, Any] | None = None
    requestid: str = ""
    bid: str = ""
    #: a deletion sent again with the SyncToken read after a 5010 (only once)
    again: bool = False

    @property
    def key(self) -> str:
        """The row's id, or the deleted object's QBO Id."""
        return str(self.row["id"]) if self.row is not None else str(self.body["Id"])

    def single(self, company: client.Company) -> client.Request:
        e, body, rid = self.qbo_entity, self.body, self.requestid
        if self.kind == "create":
            # not resent blindly after an answer that never came: looked up first (see above)
            return replace(client.create_request(company, e, body, rid), idempotent=False)
        if self.kind == "update":
            return client.update_request(company, e, body, rid)
        if self.kind == "void":
            return client.void_request(company, e, body["Id"], body["SyncToken"], rid)
        if self.kind == "delete":
            return client.delete_request(company, e, body["Id"], body["SyncToken"], rid)
        return client.deactivate_request(company, e, body["Id"], body["SyncToken"], rid)

    def batch_item(self) -> dict[str, Any]:
        e, body = self.qbo_entity, self.body
        if self.kind == "create":
            return client.batch_create(self.bid, e, body)
        if self.kind == "update":
            return client.batch_update(self.bid, e, body)
        if self.kind == "void":
            return client.batch_void(self.bid, e, body["Id"], body["SyncToken"])
        if self.kind == "delete":
            return client.batch_delete(self.bid, e, body["Id"], body["SyncToken"])
        return client.batch_update(
            self.bid, e, {"Id": body["Id"], "SyncToken": body["SyncToken"], "Active": False}
        )

    def identity(self) -> str:
        """What makes this operation this one (for the batch's requestid)."""
        row = self.row or {}
        # the SyncToken too: a row merged after a 5010 keeps its version but is another update;
        # and the attempts: a row QBO refused and that is retried unchanged (a person fixed what
        # it references in QBO) must not be answered from that refusal
        version = f"{row.get('qbo_local_version', '')}.{row.get('qbo_sync_attempts', '')}"
        token = self.body.get("SyncToken", "")
        # a create's requestid is the row's stored one; an update's is fresh each time (the row's
        # version and SyncToken say which update it is); a deletion's is fresh and kept: a
        # deletion QBO refused (an invoice with payments) must not be answered from that refusal
        # once it is tried again (deleting twice is harmless: QBO answers 610, done)
        stored = "" if self.kind in ("update", "void") else self.requestid
        return f"{self.kind}:{self.key}:{version}:{token}:{stored}"


def batch_requestid(entity: str, ops: Sequence[Op]) -> str:
    """The requestid of a batch: the same operations give the same one (see the docstring)."""
    return str(uuid.uuid5(BATCH_NAMESPACE, entity + "|" + "|".join(op.identity() for op in ops)))


class Pusher:
    """Pushes one organization's changed rows and deletions of an entity (one job)."""

    def __init__(self, ctx: Any, counts: dict[str, Any]) -> None:
        self.ctx = ctx
        self.plpy = ctx.plpy
        self.org = ctx.organization_id
        self.counts = counts
        for key in (
            "created",
            "pushed_updates",
            "voided",
            "deleted",
            "deactivated",
            "linked",
            "refused",
            "held",
            "conflicts",
            "batches",
            "single_calls",
        ):
            counts.setdefault(key, 0)
        for key in ("entity_count", "success_count", "failure_count"):
            counts.setdefault(key, 0)
        self.unknown_outcomes = 0
        #: the job's progress (qbo_sync_db.progress): operations sent, and the counts of this
        #: push (a 'both' job's pull counted before it, in the same summary)
        self.sent = 0
        self.counted_from = {k: counts[k] for k in ("success_count", "failure_count")}
        #: rows pushed once more after a merge (only once per job)
        self.repushed: set[str] = set()
        #: rows not to read again in this job (held, or given up on for now)
        self.skip: list[str] = []

    # ------------------------------------------------------------------ the job

    def push(self, entity: str) -> dict[str, Any]:
        spec = mapping.ENTITIES[entity]
        self.entity, self.spec = entity, spec
        # business columns are taken from QBO's answer only while the row is at the version
        # pushed; what QBO computes always
        self.always = [f.column for f in spec.fields if f.read_only]
        if spec.derived is not None:
            self.always += sorted(spec.derived({}))
        self.columns = [f.column for f in spec.fields if not f.read_only]
        self._push_deletions()
        while True:
            rows = [
                json.loads(r["row"], parse_float=Decimal)
                for r in db.execute(
                    self.plpy,
                    ROWS,
                    ["uuid", "text", "integer", "uuid[]"],
                    [self.org, entity, ROUND, self.skip],
                )
            ]
            if not rows:
                return self.counts
            ops: list[Op] = []
            named = self._names_in_qbo(
                [r for r in rows if r.get("qbo_id") is None and r.get("qbo_create_sent_at")]
            )
            for row in rows:
                reason = self._hold_reason(entity, row)
                if reason is not None:
                    self._problem(row["id"], reason, "held", "dependency")
                    self.skip.append(row["id"])
                    self.counts["held"] += 1
                    continue
                if row.get("qbo_id") is None and row.get("qbo_create_sent_at") is not None:
                    if self._found_in_qbo(row, named):
                        continue  # the create had reached QBO: linked
                op = self._op(row)
                if op is not None:
                    ops.append(op)
            self._send(ops)
            if self.ctx.time_is_up():
                self.counts["continues"] = True
                return self.counts

    def _op(self, row: dict[str, Any]) -> Op | None:
        entity, spec = self.entity, self.spec
        self.counts["entity_count"] += 1
        lines = _lines(entity, row)
        if row.get("qbo_id") is None:
            body = mapping.to_qbo(entity, row, lines=lines)
            return Op("create", spec.qbo_entity, body, row)
        ident = {"Id": str(row["qbo_id"]), "SyncToken": str(row["qbo_sync_token"])}
        if (
            spec.voided_column
            and row.get(spec.voided_column)
            and not mapping.is_voided(entity, row.get("qbo_raw") or {})
        ):
            return Op("void", spec.qbo_entity, ident, row, client.new_requestid())
        # sparse: every value the row has, and what it cleared since the base (the object as
        # both sides last agreed) sent as QBO clears it; a field left out is kept by QBO
        cleared = _cleared(entity, row)
        body = mapping.to_qbo(entity, row, lines=lines)
        if cleared:
            body |= {
                key: value
                for key, value in mapping.to_qbo(entity, row, changed=cleared).items()
                if key not in ("Id", "SyncToken", "sparse")
            }
        return Op("update", spec.qbo_entity, body | ident, row, client.new_requestid())

    # ------------------------------------------------------------------ sending

    def _send(self, ops: list[Op]) -> None:
        """Send `ops` as batches and single calls (see `plan`), creates' requestids committed
        first."""
        if not ops:
            return
        creates = [op for op in ops if op.kind == "create"]
        if creates:
            ids = [op.row["id"] for op in creates if op.row is not None]
            stored = {
                r["row_id"]: r["requestid"]
                for r in db.execute(
                    self.plpy, PREPARE, ["uuid", "text", "uuid[]"], [self.org, self.entity, ids]
                )
            }
            for op in creates:
                op.requestid = stored.get(op.key, "")
            # a row deleted here since it was read is not created
            ops = [op for op in ops if op.kind != "create" or op.requestid]
        self.ctx.commit()  # stored before any request can leave
        limits = self.ctx.connection().pacer.limits
        singles = singles_per_batch(limits.per_minute, limits.batches_per_minute)
        for kind, start, end in plan(len(ops), client.BATCH_MAX_ITEMS, singles):
            if kind == "batch":
                self._send_batch(ops[start:end])
            else:
                self._send_single(ops[start])

    def _send_single(self, op: Op) -> None:
        self.counts["single_calls"] += 1
        self.sent += 1
        try:
            answer = self.ctx.connection().send(op.single)
        except QboRequestRejected as refused:
            self._answered(op, None, refused.api_error, refused.message)
            self._publish()
            return
        except QboSyncError as failed:
            self._request_failed([op], failed)
            return
        self._answered(op, client.parse_entity(answer.data, op.qbo_entity), None, "")
        self._publish()

    def _publish(self) -> None:
        """Publish the job's progress (in the current transaction: committed with the answers
        it counts, before the next request leaves)."""
        self.ctx.progress.publish(
            "push",
            sent=self.sent,
            pushed=self.counts["success_count"] - self.counted_from["success_count"],
            failed=self.counts["failure_count"] - self.counted_from["failure_count"],
        )

    def _send_batch(self, ops: Sequence[Op]) -> None:
        self.counts["batches"] += 1
        self.sent += len(ops)
        self._send_batch_ops(ops)
        self._publish()

    def _send_batch_ops(self, ops: Sequence[Op]) -> None:
        for n, op in enumerate(ops):
            op.bid = f"b{n}"
        rid = batch_requestid(self.entity, ops)
        items = [op.batch_item() for op in ops]
        has_creates = any(op.kind == "create" for op in ops)

        def build(company: client.Company) -> client.Request:
            request = client.batch_request(company, items, rid)
            return replace(request, idempotent=False) if has_creates else request

        try:
            answer = self.ctx.connection().send(build)
        except QboRequestRejected as refused:  # the batch itself (not an item) was refused
            for op in ops:
                self._answered(op, None, refused.api_error, refused.message)
            return
        except QboSyncError as failed:
            self._request_failed(list(ops), failed)
            return
        results = client.parse_batch(
            answer.data, [op.bid for op in ops], answer.status, answer.intuit_tid
        )
        for op in ops:
            result = results[op.bid]
            if result.ok and result.object is not None:
                self._answered(op, result.object, None, "")
                continue
            error = result.exception()
            if error is None or isinstance(error, QboRequestRejected):
                message = error.message if error is not None else "QBO's answer held no object"
                self._answered(op, None, result.error, message)
            else:  # this item's outcome is unknown (no answer for it, a system fault)
                self._item_failed(op, error)

    def _request_failed(self, ops: list[Op], failed: QboSyncError) -> None:
        """A request got no answer QBO committed to (throttled past the retries, a 5xx, a
        timeout, authorization): its rows note the class; the job fails and is retried. A
        request with creates whose answer never came is looked up (next round) before it is
        sent again, a few times in one job."""
        api_error = failed.api_error
        ambiguous = isinstance(failed, QboServerError | QboUnreachable)
        for op in ops:
            if op.row is not None:
                self._problem(
                    op.key,
                    failed.message,
                    None,
                    problem_class(failed),
                    api_error.code if api_error else None,
                    api_error.intuit_tid if api_error else None,
                )
        if (
            ambiguous
            and any(op.kind == "create" for op in ops)
            and self.unknown_outcomes < MAX_UNKNOWN_OUTCOMES
        ):
            self.unknown_outcomes += 1
            self.counts["unknown_outcomes"] = self.unknown_outcomes
            self.ctx.commit()
            return
        self.counts["failure_count"] += len(ops)
        self._publish()
        self.ctx.commit()  # the rows' notes outlive the failed job
        raise failed

    def _item_failed(self, op: Op, error: QboSyncError) -> None:
        """One batch item without a usable answer: noted; a create is looked up next round,
        anything else waits for the next push."""
        api_error = error.api_error
        if op.row is not None:
            self._problem(
                op.key,
                error.message,
                None,
                problem_class(error),
                api_error.code if api_error else None,
                api_error.intuit_tid if api_error else None,
            )
            if op.kind == "create" and self.unknown_outcomes < MAX_UNKNOWN_OUTCOMES:
                self.unknown_outcomes += 1
                return
            self.skip.append(op.key)
        else:
            self._deletion_done(op.key, error.message)
        self.counts["failure_count"] += 1

    # ------------------------------------------------------------------ answers

    def _answered(
        self, op: Op, obj: dict[str, Any] | None, error: QboApiError | None, message: str
    ) -> None:
        """What QBO said to one operation: its object, or a fault."""
        if obj is not None:
            if op.row is None:
                self._deletion_done(op.key, None)
                self.counts["deleted" if op.kind == "delete" else "deactivated"] += 1
            else:
                self._record(op.row, obj)
                counter = {"create": "created", "update": "pushed_updates", "void": "voided"}
                self.counts[counter[op.kind]] += 1
            self.counts["success_count"] += 1
            return
        code = error.code if error is not None else None
        tid = error.intuit_tid if error is not None else None
        if op.row is None:
            self._deletion_refused(op, code, message)
            return
        if code == STALE and op.kind in ("update", "void"):
            self._stale(op, code, tid, message)
            return
        if code == REQUESTID_USED and op.kind == "create":
            # QBO saw this requestid (some paths answer 600 rather than replay) and the lookup
            # did not find the object: QBO refused it then. The next push sends it afresh.
            self._problem(op.key, message, None, "transient", code, tid)
            self.skip.append(op.key)
            self.counts["failure_count"] += 1
            return
        if code == DUPLICATE_NAME and op.kind == "create" and self.entity in NAME_FIELD:
            self._duplicate_name(op, code, tid, message)
            return
        self._problem(op.key, message, "error", "validation", code, tid)
        self.counts["refused"] += 1
        self.counts["failure_count"] += 1

    def _record(self, row: dict[str, Any], obj: dict[str, Any], version: int | None = None) -> None:
        """Store QBO's object as the answer to pushing `row` at `version` (its version read;
        the synced version: link only, the row's values still to push)."""
        pushed = mapping.from_qbo(self.entity, obj) | {"qbo_raw": obj}
        db.execute(
            self.plpy,
            RECORD,
            ["uuid", "text", "uuid", "bigint", "text", "text[]", "text[]"],
            [
                self.org,
                self.entity,
                row["id"],
                row["qbo_local_version"] if version is None else version,
                json.dumps(pushed, default=str),
                self.columns,
                self.always,
            ],
        )
        if self.entity == "invoices" and version is None:
            line_ids = [str(line["qbo_line_id"]) for line in mapping.invoice_lines(obj)]
            db.execute(
                self.plpy,
                LINES,
                ["uuid", "uuid", "text[]", "bigint"],
                [self.org, row["id"], line_ids, row["qbo_local_version"]],
            )

    def _link(self, row: dict[str, Any], obj: dict[str, Any]) -> None:
        """Link `row` to QBO object `obj` found for it: stored like QBO's answer to its create
        when it holds what the row would send, else linked and the row's values pushed to it
        (the next round sends them as an update)."""
        body = mapping.to_qbo(self.entity, row, lines=_lines(self.entity, row))
        if sent_matches(body, obj):
            self._record(row, obj)
        else:
            self._record(row, obj, version=row["qbo_synced_version"])
        self.counts["linked"] += 1
        self.counts["success_count"] += 1

    def _stale(self, op: Op, code: str, tid: str | None, message: str) -> None:
        """5010 on an update or void: read QBO's object; our own write whose answer was lost is
        stored as pushed, anything else is merged (qbo_sync_db.conflicts)."""
        row = op.row
        assert row is not None
        remote = self._read(op.qbo_entity, str(row["qbo_id"]))
        if remote is None:
            self._problem(op.key, message, "error", "validation", code, tid)
            self.counts["refused"] += 1
            return
        landed = (
            mapping.is_voided(self.entity, remote)
            if op.kind == "void"
            else sent_matches({k: v for k, v in op.body.items() if k != "SyncToken"}, remote)
        )
        if landed:
            self._record(row, remote)
            self.counts["pushed_updates" if op.kind == "update" else "voided"] += 1
            self.counts["success_count"] += 1
            return
        merge: Callable[..., str] | None = getattr(conflicts, "merge_remote", None)
        if merge is None:
            # no merge yet: a person decides (the row waits as a conflict)
            self._problem(
                op.key, f"{message} (QBO changed it too)", "conflict", "conflict", code, tid
            )
            self.counts["conflicts"] += 1
            return
        outcome = merge(self.ctx, self.entity, op.key, remote)
        self.counts[f"merged_{outcome}"] = self.counts.get(f"merged_{outcome}", 0) + 1
        if outcome == "push":
            if op.key in self.repushed:
                self.skip.append(op.key)  # pushed once more already: the next push tries it
            else:
                self.repushed.add(op.key)  # the next round reads it again and pushes it

    def _duplicate_name(self, op: Op, code: str, tid: str | None, message: str) -> None:
        """6240 on a customer or item create: link the QBO object of that name when no other
        row has it, else a conflict for a person."""
        row = op.row
        assert row is not None
        field = NAME_FIELD[self.entity]
        found = self._by_name(op.body.get(field))
        if found is None:
            self._problem(op.key, message, "error", "validation", code, tid)
            self.counts["refused"] += 1
            self.counts["failure_count"] += 1
            return
        other = self._linked_elsewhere(row, found)
        if other is None:
            self._link(row, found)
            return
        self._conflict(
            row,
            found,
            f"{message} (the {field} is QBO's {self.spec.qbo_entity} {found['Id']}, linked"
            f" to row {other})",
            code,
            tid,
            fields=["display_name" if self.entity == "customers" else "name"],
        )

    def _conflict(
        self,
        row: dict[str, Any],
        found: dict[str, Any],
        message: str,
        code: str | None,
        tid: str | None,
        fields: Sequence[str] | None = None,
    ) -> None:
        """A conflict for a person: the row and QBO object `found` (both sides' values), about
        `fields` (None: those that differ). A name QBO says is taken is about the name alone:
        the person renames the row (or links it by hand)."""
        local = {c: row.get(c) for c in self.columns}
        remote = {c: v for c, v in mapping.from_qbo(self.entity, found).items() if c in local}
        if fields is None:
            fields = sorted(c for c in local if _norm(local[c]) != _norm(remote.get(c)))
        db.execute(
            self.plpy,
            CONFLICT,
            ["uuid", "text", "uuid", "text", "text", "text", "text[]", "text", "text", "text"],
            [
                self.org,
                self.entity,
                row["id"],
                str(found["Id"]),
                json.dumps(local, default=str),
                json.dumps(remote, default=str),
                list(fields),
                message,
                code,
                tid,
            ],
        )
        self.counts["conflicts"] += 1

    # ------------------------------------------------------------------ finding creates

    def _found_in_qbo(self, row: dict[str, Any], named: dict[str, dict[str, Any]]) -> bool:
        """A create whose outcome is unknown: is it in QBO (then linked: True)? `named`: the
        name-list objects of this round's such rows, by name (`_names_in_qbo`)."""
        self.counts["looked_up"] = self.counts.get("looked_up", 0) + 1
        body = mapping.to_qbo(self.entity, row, lines=_lines(self.entity, row))
        if self.entity in NAME_FIELD:
            found = named.get(str(body.get(NAME_FIELD[self.entity]) or "").casefold())
            candidates = [found] if found is not None else []
        else:
            candidates = self._query(self._lookup_query(row, body))
            candidates = [c for c in candidates if sent_matches(body, c)]
        taken = []
        for found in candidates:
            other = self._linked_elsewhere(row, found)
            if other is None:
                self._link(row, found)
                self.counts["found_after_unknown_outcome"] = (
                    self.counts.get("found_after_unknown_outcome", 0) + 1
                )
                return True
            taken.append((found, other))
        if taken and self.entity not in NAME_FIELD:
            # QBO has what this row would create, made since it was first sent, but another row
            # is linked to it (a pull brought it in before this lookup): most likely this row's
            # own create. Sending it again would make a second one: a person decides.
            found, other = taken[0]
            self._conflict(
                row,
                found,
                f"QBO's {self.spec.qbo_entity} {found['Id']} holds what this row's create sent"
                f" (its answer was lost), but row {other} is linked to it: one of the two rows"
                " is a copy",
                None,
                None,
            )
            return True
        return False

    def _lookup_query(self, row: dict[str, Any], body: dict[str, Any]) -> str:
        sent_at = row["qbo_create_sent_at"]
        since = datetime.fromisoformat(str(sent_at)) - LOOKUP_MARGIN
        where: list[tuple[str, str, Any]] = [
            ("CustomerRef", "=", str(body["CustomerRef"]["value"])),
            ("MetaData.CreateTime", ">=", since),
        ]
        if body.get("TxnDate"):
            where.append(("TxnDate", "=", body["TxnDate"]))
        if self.entity == "invoices" and body.get("DocNumber"):
            where.append(("DocNumber", "=", body["DocNumber"]))
        return client.select(self.spec.qbo_entity, where=where)

    def _names_in_qbo(self, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The customers or items of QBO named as `rows` (inactive ones too), by name folded:
        one query per 30 names (QBO's names are unique whatever their case)."""
        if self.entity not in NAME_FIELD or not rows:
            return {}
        field = NAME_FIELD[self.entity]
        column = "display_name" if self.entity == "customers" else "name"
        names = sorted({str(r[column]) for r in rows if r.get(column)})
        found: dict[str, dict[str, Any]] = {}
        for chunk in client.chunks(names):
            where = [(field, "IN", list(chunk)), ("Active", "IN", [True, False])]
            for obj in self._query(client.select(self.spec.qbo_entity, where=where)):
                found[str(obj.get(field, "")).casefold()] = obj
        return found

    def _by_name(self, name: Any) -> dict[str, Any] | None:
        if not name:
            return None
        where = [(NAME_FIELD[self.entity], "=", str(name)), ("Active", "IN", [True, False])]
        rows = self._query(client.select(self.spec.qbo_entity, where=where))
        return rows[0] if rows else None

    def _query(self, text: str) -> list[dict[str, Any]]:
        answer = self.ctx.connection().send(lambda c: client.query_request(c, text))
        return list(client.parse_query(answer.data, self.spec.qbo_entity).rows)

    def _read(self, qbo_entity: str, qbo_id: str) -> dict[str, Any] | None:
        """QBO's object, or None when QBO no longer has it (610)."""
        try:
            answer = self.ctx.connection().send(
                lambda c: client.read_request(c, qbo_entity, qbo_id)
            )
        except QboRequestRejected as refused:
            if refused.api_error is not None and refused.api_error.code == NOT_FOUND:
                return None
            raise
        return client.parse_entity(answer.data, qbo_entity)

    def _linked_elsewhere(self, row: dict[str, Any], found: dict[str, Any]) -> str | None:
        return db.execute(
            self.plpy,
            LINKED,
            ["uuid", "text", "text", "uuid"],
            [self.org, self.entity, str(found["Id"]), row["id"]],
        )[0]["other"]

    # ------------------------------------------------------------------ local deletions

    def _push_deletions(self) -> None:
        """Drain the entity's local deletions (deleted or made inactive in QBO)."""
        kind = "deactivate" if self.entity in NAME_FIELD else "delete"
        done: set[str] = set()
        while True:
            rows = [
                r
                for r in db.execute(
                    self.plpy,
                    DELETIONS,
                    ["uuid", "text", "integer"],
                    [self.org, self.entity, ROUND],
                )
                if r["qbo_id"] not in done
            ]
            if not rows:
                return
            ops = []
            for r in rows:
                done.add(r["qbo_id"])
                ident = {"Id": r["qbo_id"], "SyncToken": r["qbo_sync_token"] or "0"}
                ops.append(
                    Op(kind, self.spec.qbo_entity, ident, None, requestid=client.new_requestid())
                )
            self._send(ops)

    def _deletion_refused(self, op: Op, code: str | None, message: str) -> None:
        if code == NOT_FOUND:  # QBO no longer has it (deleted there already): done
            self._deletion_done(op.key, None)
            self.counts["deleted" if op.kind == "delete" else "deactivated"] += 1
            return
        if code == STALE and not op.again:
            current = self._read(op.qbo_entity, op.key)
            if current is None or client.is_deleted(current):
                self._deletion_done(op.key, None)
                return
            if op.kind == "deactivate" and current.get("Active") is False:
                self._deletion_done(op.key, None)
                return
            again = Op(
                op.kind,
                op.qbo_entity,
                {"Id": op.key, "SyncToken": str(current["SyncToken"])},
                None,
                requestid=client.new_requestid(),
                again=True,
            )
            self._send_single(again)
            return
        self._deletion_done(op.key, message)
        self.counts["failure_count"] += 1

    def _deletion_done(self, qbo_id: str, error: str | None) -> None:
        db.execute(
            self.plpy,
            DELETION_DONE,
            ["uuid", "text", "text", "text"],
            [self.org, self.entity, qbo_id, error],
        )

    # ------------------------------------------------------------------ bookkeeping

    def _problem(
        self,
        row_id: str,
        message: str,
        status: str | None,
        error_class: str,
        code: str | None = None,
        tid: str | None = None,
    ) -> None:
        """A row not sent through: its message, new status (None: kept), class, QBO's code and
        intuit_tid (qbo_sync.record_push_problem)."""
        db.execute(
            self.plpy,
            PROBLEM,
            ["uuid", "text", "uuid", "text", "text", "text", "text", "text"],
            [self.org, self.entity, row_id, message, status, error_class, code, tid],
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


def _cleared(entity: str, row: Mapping[str, Any]) -> list[str]:
    """The writable columns the row has no value for while its base (qbo_raw) had one: cleared
    here, so the update must clear them in QBO (only those QBO can clear: a kind with `empty`)."""
    base = row.get("qbo_raw")
    if not isinstance(base, Mapping):
        return []
    known = mapping.from_qbo(entity, base)
    return [
        f.column
        for f in mapping.ENTITIES[entity].fields
        if not f.read_only
        and f.kind.empty is not None
        and row.get(f.column) in (None, "")
        and known.get(f.column) not in (None, "", {})
    ]


def _lines(entity: str, row: dict[str, Any]) -> list[dict[str, Any]] | None:
    """An invoice's lines as mapping.line_to_qbo takes them (None for other entities)."""
    if entity != "invoices":
        return None
    return list(row.get("lines") or [])


def _norm(value: Any) -> Any:
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return Decimal(str(value)).normalize()
    return value
