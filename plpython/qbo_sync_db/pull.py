"""Pulling from QBO into the application's tables: the job handler of pull jobs.

A full pull reads every object of the job's entity through the query endpoint, a page at a time
(`pull.page_size`, 1000 at most) in a stable order (by Id), and applies each page set-based
(qbo_sync.apply_pulled: one statement per table per page; QBO's answer itself gives each row its
qbo_raw, and an invoice's lines are read in SQL from it) in the same transaction that records
the pass's position (qbo_sync.save_full_pull). The job commits before each call to QBO, so a pull
that stops half-way resumes at the page it was on. A page starts `pull.page_overlap` positions
before where the last one ended, so an object that moved up (another was deleted meanwhile) is
not skipped; objects read twice change nothing (same SyncToken), except what QBO computes (a
balance may move without a new SyncToken). The pass's start becomes the point incremental pulls
(CDC) continue from. The Ids each page read are kept (qbo_sync.pull_pass_seen); when the pass
ends, a row linked to an Id it never read was deleted in QBO while no CDC saw it, and is marked
(whatever order QBO pages Ids in: Intuit does not say whether it sorts them as numbers).

Each page publishes the job's progress (qbo_sync_db.progress) in its own transaction: how far
into QBO's list the pass is, and how many objects QBO has. That total costs one more call per
pass, a COUNT(*) query, made only when the first page came back full (a pass of one page knows
its total from that page); docs/architecture.md says why it is worth it.

Objects that reference others (an invoice its customer and its lines' items, a payment its
customer and invoice) are linked by QBO Id; a referenced object not here yet is fetched first.
Name-list entities (customers, items) are read with `Active IN (true, false)`: QBO's queries
leave inactive ones out otherwise, and an inactive customer stays, inactive.

A pulled object whose row was changed here too (not pushed yet) is merged field by field
(qbo_sync_db.conflicts: the rows of a page read in one statement and written in one); a row
waiting for a person's decision on a conflict stays as it is, and its conflict records QBO's
newer values.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from qbo_sync_db import client, conflicts, db, mapping
from qbo_sync_db.errors import QboRequestRejected

CURSOR = """
SELECT started_at, next_position, changed_since,
       coalesce(requested_at::timestamptz >= $3::timestamptz, false) AS covered
  FROM qbo_sync.pull_cursor($1, $2)"""
COMPANIONS = "SELECT entity, changed_since FROM qbo_sync.cdc_companions($1, $2)"
SAVE_INCREMENTAL = (
    "SELECT qbo_sync.save_incremental_pull($1, $2, $3::timestamptz, $4, $5::timestamptz)"
)
CLOCK = "SELECT pg_catalog.clock_timestamp()::text AS now"
COVERED = "SELECT qbo_sync.complete_covered_pulls($1, $2, $3::timestamptz, $4) AS done"
APPLY_DELETIONS = "SELECT qbo_sync.apply_pulled_deletions($1, $2, $3) AS marked"
SEEN = "SELECT qbo_sync.record_pass_seen($1, $2, $3, $4)"
FINISH_ABSENT = "SELECT qbo_sync.finish_pass_absent($1, $2, $3::timestamptz) AS marked"
START_PASS = "SELECT pg_catalog.now()::text AS started_at"
SAVE = "SELECT qbo_sync.save_full_pull($1, $2, $3::timestamptz, $4)"
APPLY = """
SELECT qbo_sync.apply_pulled($1, $2, $3::jsonb, $4, $5::jsonb, $6::jsonb #> $7)::text AS result"""
KNOWN = "SELECT qbo_sync.known_qbo_ids($1, $2, $3) AS known"
KEEP_HELD = "SELECT qbo_sync.keep_conflicts_held($1, $2) AS kept"
SETTINGS = """
SELECT qbo_sync.setting_numeric('pull.page_size')::integer AS page_size,
       qbo_sync.setting_numeric('pull.page_overlap')::integer AS overlap,
       qbo_sync.setting_numeric('pull.cdc_overlap_seconds')::double precision AS cdc_overlap,
       qbo_sync.setting_numeric('pull.cdc_max_objects')::integer AS cdc_max_objects"""

NAME_LISTS = frozenset({"customers", "items"})
#: the order pulled objects are applied in: what is referenced before what references it
APPLY_ORDER = ("customers", "items", "invoices", "payments")
#: ids per query when fetching referenced objects (`Id IN (...)`)
FETCH_CHUNK = 200


class Puller:
    """Full pulls for one job (one organization)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.plpy = ctx.plpy
        self.org = ctx.organization_id
        settings = db.execute(self.plpy, SETTINGS, [], [])[0]
        self.page_size = max(1, min(int(settings["page_size"]), client.QUERY_MAX_RESULTS))
        self.overlap = max(0, min(int(settings["overlap"]), self.page_size - 1))
        self.cdc_overlap = max(0.0, float(settings["cdc_overlap"]))
        self.cdc_max_objects = max(1, int(settings["cdc_max_objects"]))
        self.counts: dict[str, Any] = {
            "entity_count": 0,
            "success_count": 0,
            "failure_count": 0,
            "pages": 0,
            "inserted": 0,
            "updated": 0,
            "unchanged": 0,
            "held": 0,
            "merged": 0,
            "conflicts": 0,
            "held_for_person": 0,
            "fetched_references": 0,
            "deleted": 0,
            "balances_refreshed": 0,
            "mode": None,
        }
        #: customers whose balance an invoice or payment pulled here may have moved (QBO changes
        #: a customer's Balance without a new SyncToken, and neither CDC nor webhooks report it)
        self.balances_moved: set[str] = set()
        self.customers_read: set[str] = set()

    def pull(self, entity: str) -> dict[str, Any]:
        """Incremental (CDC) when the cursor allows it, else a full pass (or the rest of one);
        nothing when a CDC request sent after this job was queued already covered the entity
        (another entity's job of the organization brought it up to date in the same call)."""
        db.execute(self.plpy, KEEP_HELD, ["uuid", "text"], [self.org, entity])
        cursor = db.execute(
            self.plpy,
            CURSOR,
            ["uuid", "text", "text"],
            [self.org, entity, self.ctx.job.get("created_at")],
        )[0]
        if cursor["changed_since"] is not None and cursor["covered"]:
            self.counts["mode"] = "up to date"
            return self.counts
        if cursor["changed_since"] is not None:
            self.incremental_pull(entity, float(cursor["changed_since"]))
            self.refresh_balances()
            return self.counts
        return self.full_pull(entity, cursor["started_at"], cursor["next_position"])

    # ------------------------------------------------------------------ incremental pull

    def incremental_pull(self, entity: str, changed_since: float) -> dict[str, Any]:
        """Changes since the cursor (less `pull.cdc_overlap_seconds`, so a change at the edge is
        read again rather than missed) through CDC.

        One call asks for every entity of the organization whose cursor allows CDC, and brings
        them all up to date (their own jobs then find nothing to do): an incremental cycle of the
        four entities is one call. When that answer is capped (CDC answers at most 1000 objects
        in all) the job goes on with its own entity alone: a full answer is followed by the
        next one, starting at its last change, and a full pass is asked for next, since
        deletions may be missing."""
        companions = [
            (row["entity"], float(row["changed_since"]))
            for row in db.execute(self.plpy, COMPANIONS, ["uuid", "text"], [self.org, entity])
        ]
        if companions and self._combined_cdc([(entity, changed_since), *companions]):
            return self.counts
        spec = mapping.ENTITIES[entity]
        self.counts["mode"] = "incremental"
        since = dt.datetime.fromtimestamp(changed_since - self.cdc_overlap, dt.UTC)
        capped = False
        while True:
            requested_at = db.execute(self.plpy, CLOCK, [], [])[0]["now"]
            answer = self.ctx.connection().send(
                lambda company, since=since: client.cdc_request(company, [spec.qbo_entity], since)
            )
            result = client.parse_cdc(answer.data)
            live, deleted = result.live(spec.qbo_entity), result.deleted(spec.qbo_entity)
            self.counts["pages"] += 1
            self._apply_changes(entity, live, deleted)
            full = len(live) + len(deleted) >= self.cdc_max_objects
            capped = capped or full
            point = _latest_change(live) if full else result.time
            db.execute(
                self.plpy,
                SAVE_INCREMENTAL,
                ["uuid", "text", "text", "boolean", "text"],
                [
                    self.org,
                    entity,
                    point or since.isoformat(),
                    capped,
                    None if full else requested_at,
                ],
            )
            self.publish()
            self.ctx.commit()
            if not full:
                return self.counts
            if self.ctx.time_is_up():
                self.counts["continues"] = True  # resumes from the point saved above
                return self.counts
            following = _parse_time(point) if point else None
            if following is None or following <= since:
                return self.counts  # no progress possible here: the full pass asked for reads on
            since = following

    def _combined_cdc(self, group: Sequence[tuple[str, float]]) -> bool:
        """One CDC call for every entity of `group` (entity, cursor), from the earliest cursor;
        False (nothing applied) when the answer was capped and each entity must go alone."""
        ordered = sorted(group, key=lambda item: APPLY_ORDER.index(item[0]))
        names = [mapping.ENTITIES[e].qbo_entity for e, _ in ordered]
        since = dt.datetime.fromtimestamp(min(c for _, c in ordered) - self.cdc_overlap, dt.UTC)
        requested_at = db.execute(self.plpy, CLOCK, [], [])[0]["now"]
        answer = self.ctx.connection().send(
            lambda company: client.cdc_request(company, names, since)
        )
        result = client.parse_cdc(answer.data)
        self.counts["pages"] += 1
        if result.count >= self.cdc_max_objects:
            return False
        self.counts["mode"] = "incremental"
        self.counts["cdc_entities"] = names
        for (entity, _), name in zip(ordered, names, strict=True):
            self._apply_changes(entity, result.live(name), result.deleted(name))
            db.execute(
                self.plpy,
                SAVE_INCREMENTAL,
                ["uuid", "text", "text", "boolean", "text"],
                [self.org, entity, result.time or since.isoformat(), False, requested_at],
            )
        # the organization's other pull jobs this call covered are done: no claim, no run
        self.counts["covered_jobs"] = db.execute(
            self.plpy,
            COVERED,
            ["uuid", "text[]", "text", "uuid"],
            [self.org, [e for e, _ in ordered], requested_at, self.ctx.job["id"]],
        )[0]["done"]
        self.publish()
        self.ctx.commit()
        return True

    def _apply_changes(
        self, entity: str, live: Sequence[Mapping[str, Any]], deleted: Sequence[Mapping[str, Any]]
    ) -> None:
        self.apply(entity, live)
        if deleted:
            ids = [str(obj.get("Id")) for obj in deleted]
            self.counts["deleted"] += db.execute(
                self.plpy, APPLY_DELETIONS, ["uuid", "text", "text[]"], [self.org, entity, ids]
            )[0]["marked"]

    def refresh_balances(self) -> None:
        """Read again the customers whose balance the invoices and payments pulled may have
        moved (not read in this job already): QBO changes a customer's Balance without a new
        SyncToken, and neither CDC nor webhooks report it."""
        ids = sorted(self.balances_moved - self.customers_read, key=lambda i: (len(i), i))
        kept = {key: self.counts[key] for key in ("inserted", "updated", "unchanged", "held")}
        for chunk in _chunks(ids, FETCH_CHUNK):
            fetched = self._fetch("customers", chunk)
            self.apply("customers", fetched, depth=1)
            self.counts["balances_refreshed"] += len(fetched)
        self.counts.update(kept)  # the job's counts are of its own entity's objects
        if ids:
            self.ctx.commit()
        self.balances_moved.clear()

    # ------------------------------------------------------------------ full pull

    def full_pull(
        self, entity: str, started_at: str | None, position: int | None
    ) -> dict[str, Any]:
        spec = mapping.ENTITIES[entity]
        self.counts["mode"] = "full"
        if position is None:  # a new pass
            started_at = db.execute(self.plpy, START_PASS, [], [])[0]["started_at"]
            position = 1
        where = [("Active", "IN", [True, False])] if entity in NAME_LISTS else []
        query = client.select(spec.qbo_entity, where, ["Id"])
        while True:
            text = client.page(query, position, self.page_size)
            answer = self.ctx.connection().send(
                lambda company, text=text: client.query_request(company, text)
            )
            objects = client.parse_query(answer.data, spec.qbo_entity).rows
            self.counts["pages"] += 1
            # the objects' own JSON is QBO's answer as it came: not encoded again for qbo_raw
            self.apply(entity, objects, raw=_answer_list(answer, spec.qbo_entity))
            following = client.next_start(position, self.page_size, len(objects))
            next_position = None if following is None else max(1, following - self.overlap)
            db.execute(
                self.plpy,
                SEEN,
                ["uuid", "text", "text[]", "boolean"],
                [self.org, entity, [str(obj.get("Id")) for obj in objects], position == 1],
            )
            if next_position is None:
                self.counts["deleted"] += db.execute(
                    self.plpy,
                    FINISH_ABSENT,
                    ["uuid", "text", "text"],
                    [self.org, entity, started_at],
                )[0]["marked"]
            db.execute(
                self.plpy,
                SAVE,
                ["uuid", "text", "text", "integer"],
                [self.org, entity, started_at, next_position],
            )
            progress = self.ctx.progress
            read = position + len(objects) - 1
            progress.read_in_pass = max(read, progress.read_in_pass or 0)
            if position == 1:  # a new pass: how many objects QBO has
                progress.total = len(objects) if next_position is None else self._count(entity)
            if next_position is None:
                progress.total = read  # the pass read to the end of QBO's list: that many
            self.publish()
            self.ctx.commit()
            if next_position is None:
                return self.counts
            if self.ctx.time_is_up():
                self.counts["continues"] = True  # resumes at next_position, saved above
                return self.counts
            position = next_position

    def _count(self, entity: str) -> int | None:
        """How many objects of `entity` QBO has (one COUNT(*) query; None when refused)."""
        spec = mapping.ENTITIES[entity]
        where = [("Active", "IN", [True, False])] if entity in NAME_LISTS else []
        text = client.select(spec.qbo_entity, where, count=True)
        try:
            answer = self.ctx.connection().send(lambda company: client.query_request(company, text))
        except QboRequestRejected:
            return None  # the bar goes without a percentage
        return client.parse_query(answer.data, spec.qbo_entity).total_count

    def publish(self) -> None:
        """Publish the job's progress (in the current transaction: committed with the page)."""
        counts = self.counts
        self.ctx.progress.publish(
            "pull",
            counts["mode"],
            read=counts["entity_count"],
            written=counts["inserted"] + counts["updated"],
            held=counts["held_for_person"],
        )

    # ------------------------------------------------------------------ applying

    def apply(
        self,
        entity: str,
        objects: Sequence[Mapping[str, Any]],
        depth: int = 0,
        raw: tuple[str, list[str]] | None = None,
    ) -> None:
        """Apply pulled `objects` of `entity`, fetching the objects they reference first.
        `raw`: the JSON answer `objects` were decoded from and the path to their list in it,
        which then gives each row its qbo_raw (else each row carries its object, encoded)."""
        if not objects:
            return
        spec = mapping.ENTITIES[entity]
        if raw is None:
            rows = [mapping.from_qbo(entity, obj) | {"qbo_raw": obj} for obj in objects]
        else:
            rows = [mapping.from_qbo(entity, obj) for obj in objects]
        if entity == "customers":
            self.customers_read.update(str(obj.get("Id")) for obj in objects)
        elif entity in ("invoices", "payments"):
            key = mapping.reference_key("customer_id")
            self.balances_moved.update(str(r[key]) for r in rows if r.get(key))
        if depth < 2:
            items = {i for obj in objects for i in mapping.line_item_ids(obj)}
            self._fetch_missing_references(spec, rows, items, depth)
        columns = [f.column for f in spec.fields] + (
            [spec.voided_column] if spec.voided_column else []
        )
        if spec.derived is not None:
            columns += sorted(spec.derived({}))
        refs = {ref.column: ref.entity for ref in spec.references}
        result = json.loads(
            db.execute(
                self.plpy,
                APPLY,
                ["uuid", "text", "text", "text[]", "text", "text", "text[]"],
                [
                    self.org,
                    entity,
                    _dumps(rows),
                    columns,
                    json.dumps(refs),
                    None if raw is None else raw[0],
                    None if raw is None else raw[1],
                ],
            )[0]["result"]
        )
        for key in ("inserted", "updated", "unchanged", "held"):
            self.counts[key] += result[key]
        by_id = {str(obj.get("Id")): obj for obj in objects}
        merged = conflicts.merge_pulled(
            self.plpy, self.org, entity, {i: by_id[i] for i in result["held_ids"] if i in by_id}
        )
        waiting = {i: by_id[i] for i in result.get("conflict_ids", []) if i in by_id}
        conflicts.record_held(self.plpy, self.org, entity, waiting)
        for key in ("merged", "conflicts", "held_for_person"):
            self.counts[key] += merged[key]
        self.counts["held_for_person"] += len(waiting)
        if depth == 0:
            self.counts["entity_count"] += result["received"]
            self.counts["success_count"] += (
                result["received"] - result["held"] + merged["merged"] - merged["held_for_person"]
            )

    def _fetch_missing_references(
        self,
        spec: mapping.EntityMap,
        rows: Sequence[Mapping[str, Any]],
        item_ids: set[str],
        depth: int,
    ) -> None:
        wanted: dict[str, set[str]] = {}
        for ref in spec.references:
            ids = {r[mapping.reference_key(ref.column)] for r in rows}
            wanted.setdefault(ref.entity, set()).update(i for i in ids if i)
        if item_ids:
            wanted.setdefault("items", set()).update(item_ids)
        for entity, ids in wanted.items():
            if not ids:
                continue
            known = set(
                db.execute(
                    self.plpy, KNOWN, ["uuid", "text", "text[]"], [self.org, entity, sorted(ids)]
                )[0]["known"]
            )
            missing = sorted(ids - known, key=lambda i: (len(i), i))
            for chunk in _chunks(missing, FETCH_CHUNK):
                fetched = self._fetch(entity, chunk)
                self.counts["fetched_references"] += len(fetched)
                self.apply(entity, fetched, depth + 1)

    def _fetch(self, entity: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        spec = mapping.ENTITIES[entity]
        where: list[tuple[str, str, Any]] = [("Id", "IN", list(ids))]
        if entity in NAME_LISTS:
            where.append(("Active", "IN", [True, False]))
        text = client.page(client.select(spec.qbo_entity, where), 1, client.QUERY_MAX_RESULTS)
        answer = self.ctx.connection().send(lambda company: client.query_request(company, text))
        return client.parse_query(answer.data, spec.qbo_entity).rows


def _answer_list(answer: Any, qbo_entity: str) -> tuple[str, list[str]] | None:
    """A query answer's text and the path to its list of `qbo_entity` objects, or None when
    the answer is not the usual {"QueryResponse": {...}} in UTF-8."""
    if not isinstance(answer.data, dict) or "QueryResponse" not in answer.data:
        return None
    try:
        return answer.body.decode("utf-8"), ["QueryResponse", qbo_entity]
    except UnicodeDecodeError:
        return None


def _latest_change(objects: Sequence[Mapping[str, Any]]) -> str | None:
    """The latest MetaData.LastUpdatedTime among `objects` (ISO text), or None."""
    stamps = [
        (parsed, text)
        for text in ((obj.get("MetaData") or {}).get("LastUpdatedTime") for obj in objects)
        if text and (parsed := _parse_time(text)) is not None
    ]
    return max(stamps)[1] if stamps else None


def _parse_time(text: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))
