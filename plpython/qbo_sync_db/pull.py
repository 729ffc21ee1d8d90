"""Pulling from QBO into the application's tables: the job handler of pull jobs.

A full pull reads every object of the job's entity through the query endpoint, a page at a time
(`pull.page_size`, 1000 at most) in a stable order (by Id), and applies each page set-based
(qbo_sync.apply_pulled: one statement per table per page) in the same transaction that records
the pass's position (qbo_sync.save_full_pull). The job commits before each call to QBO, so a pull
that stops half-way resumes at the page it was on. A page starts `pull.page_overlap` positions
before where the last one ended, so an object that moved up (another was deleted meanwhile) is
not skipped; objects read twice change nothing (same SyncToken). The pass's start becomes the
point incremental pulls (CDC) continue from.

Objects that reference others (an invoice its customer and its lines' items, a payment its
customer and invoice) are linked by QBO Id; a referenced object not here yet is fetched first.
Name-list entities (customers, items) are read with `Active IN (true, false)`: QBO's queries
leave inactive ones out otherwise, and an inactive customer stays, inactive.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from qbo_sync_db import client, db, mapping
from qbo_sync_db.errors import QboRequestRejected

POSITION = (
    "SELECT started_at::text AS started_at, next_position FROM qbo_sync.full_pull_position($1, $2)"
)
START_PASS = "SELECT pg_catalog.now()::text AS started_at"
SAVE = "SELECT qbo_sync.save_full_pull($1, $2, $3::timestamptz, $4)"
APPLY = "SELECT qbo_sync.apply_pulled($1, $2, $3::jsonb, $4, $5::jsonb)::text AS result"
APPLY_LINES = "SELECT qbo_sync.apply_pulled_lines($1, $2, $3::jsonb) AS written"
KNOWN = "SELECT qbo_sync.known_qbo_ids($1, $2, $3) AS known"
SETTINGS = """
SELECT qbo_sync.setting_numeric('pull.page_size')::integer AS page_size,
       qbo_sync.setting_numeric('pull.page_overlap')::integer AS overlap"""

NAME_LISTS = frozenset({"customers", "items"})
#: ids per query when fetching referenced objects (`Id IN (...)`)
FETCH_CHUNK = 200


def run(ctx: Any) -> dict[str, Any]:
    """The handler of a job of any synced entity (qbo_sync.entity.handler)."""
    job = ctx.job
    if job.get("direction") != "pull":
        raise QboRequestRejected(
            f"qbo-sync {_version()} pulls only: a {job.get('direction')} job of "
            f"{job['sync_endpoint']} cannot run yet",
            hint="queue it with direction 'pull'; pushing comes with the sync engine's next step",
        )
    puller = Puller(ctx)
    counts = puller.full_pull(job["sync_endpoint"])
    return ctx.summary(**counts)


def _version() -> str:
    from qbo_sync_db import __version__

    return __version__


class Puller:
    """Full pulls for one job (one organization)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.plpy = ctx.plpy
        self.org = ctx.organization_id
        settings = db.execute(self.plpy, SETTINGS, [], [])[0]
        self.page_size = max(1, min(int(settings["page_size"]), client.QUERY_MAX_RESULTS))
        self.overlap = max(0, min(int(settings["overlap"]), self.page_size - 1))
        self.counts: dict[str, Any] = {
            "entity_count": 0,
            "success_count": 0,
            "failure_count": 0,
            "pages": 0,
            "inserted": 0,
            "updated": 0,
            "unchanged": 0,
            "held": 0,
            "fetched_references": 0,
        }

    # ------------------------------------------------------------------ full pull

    def full_pull(self, entity: str) -> dict[str, Any]:
        spec = mapping.ENTITIES[entity]
        row = db.execute(self.plpy, POSITION, ["uuid", "text"], [self.org, entity])[0]
        started_at, position = row["started_at"], row["next_position"]
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
            self.apply(entity, objects)
            following = client.next_start(position, self.page_size, len(objects))
            next_position = None if following is None else max(1, following - self.overlap)
            db.execute(
                self.plpy,
                SAVE,
                ["uuid", "text", "text", "integer"],
                [self.org, entity, started_at, next_position],
            )
            self.ctx.commit()
            if next_position is None:
                return self.counts
            position = next_position

    # ------------------------------------------------------------------ applying

    def apply(self, entity: str, objects: Sequence[Mapping[str, Any]], depth: int = 0) -> None:
        """Apply pulled `objects` of `entity`, fetching the objects they reference first."""
        if not objects:
            return
        spec = mapping.ENTITIES[entity]
        rows = [mapping.from_qbo(entity, obj) | {"qbo_raw": obj} for obj in objects]
        lines: list[dict[str, Any]] = []
        if entity == "invoices":
            for obj in objects:
                for line in mapping.invoice_lines(obj):
                    lines.append(line | {"invoice_qbo_id": str(obj.get("Id"))})
        if depth < 2:
            self._fetch_missing_references(spec, rows, lines, depth)
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
                ["uuid", "text", "text", "text[]", "text"],
                [self.org, entity, _dumps(rows), columns, json.dumps(refs)],
            )[0]["result"]
        )
        for key in ("inserted", "updated", "unchanged", "held"):
            self.counts[key] += result[key]
        if depth == 0:
            self.counts["entity_count"] += result["received"]
            self.counts["success_count"] += result["received"] - result["held"]
        if lines and result["written_ids"]:
            db.execute(
                self.plpy,
                APPLY_LINES,
                ["uuid", "text[]", "text"],
                [self.org, result["written_ids"], _dumps(lines)],
            )

    def _fetch_missing_references(
        self,
        spec: mapping.EntityMap,
        rows: Sequence[Mapping[str, Any]],
        lines: Sequence[Mapping[str, Any]],
        depth: int,
    ) -> None:
        wanted: dict[str, set[str]] = {}
        for ref in spec.references:
            ids = {r[mapping.reference_key(ref.column)] for r in rows}
            wanted.setdefault(ref.entity, set()).update(i for i in ids if i)
        item_ids = {line[mapping.reference_key("item_id")] for line in lines}
        if item_ids - {None}:
            wanted.setdefault("items", set()).update(i for i in item_ids if i)
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


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))
