"""Conflicts: the three-way merge per field of a row changed both here and in QBO.

The base is what both sides last agreed on: the mapped values of the row's `qbo_raw` (the QBO
object stored by every applied pull and every answered push). `local` is the row as it is,
`remote` QBO's current object, mapped the same way (mapping.from_qbo). For each mapped field the
engine may write (not what QBO computes):

* changed on one side only → that side's value;
* changed on both sides to the same value → that value, no conflict;
* changed on both sides to different values → a conflict, decided by the field's owner when
  organization_settings.field_owners names one ({"invoices.due_date": "local"}), else by the
  organization's policy: 'qbo_wins' (the default), 'local_wins', or 'hold' (a person decides
  through public.qbo_sync_resolve_conflict; the row waits, status 'conflict').

What QBO computes (read-only fields and the entity's `derived` columns: totals, tax, balances,
an invoice's status) is always QBO's and never a conflict. An invoice's lines are one field,
"lines": the sales lines in order, each as its QBO line Id, its item's QBO Id and its mapped
values; they merge as a whole set per side (one side's list, never a mix of both).

Values compare as what they mean: decimals as numbers, empty text as no value, addresses by
their kept keys, dates by their text.

The decision (`merge`) is pure. The rest applies it: `merge_pulled` for the rows a pull found
changed on both sides (a page at a time), `merge_remote` for a push that QBO answered 5010
(stale SyncToken), `resolve` for a person's choice on a held conflict.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from qbo_sync_db import db, mapping

POLICIES = ("qbo_wins", "local_wins", "hold")
OWNERS = ("qbo", "local")
LINES = "lines"

READ = "SELECT r::text AS row FROM qbo_sync.conflict_rows($1, $2, $3, $4, $5::jsonb) AS r"
SETTINGS = "SELECT policy, field_owners::text AS owners FROM qbo_sync.conflict_settings($1)"
APPLY = "SELECT qbo_sync.apply_merges($1, $2, $3::jsonb)::text AS result"
RECORD_HELD = "SELECT qbo_sync.record_held_remote($1, $2, $3::jsonb) AS recorded"
CONFLICT = "SELECT c::text AS conflict FROM qbo_sync.conflict_for_resolution($1) AS c"
RESOLVED = "SELECT qbo_sync.mark_conflict_resolved($1, $2, $3::jsonb)"


# ----------------------------------------------------------------------------- the decision


@dataclass
class Merge:
    """The outcome of merging one row.

    `values`: the merged value of every mergeable field; `conflicts`: the fields changed on both
    sides to different values, each with who won ('qbo', 'local' or 'hold') in `decided`;
    `sources`: where each field's value came from ('remote' or 'local'); `pending`: the merged
    values differ from QBO's (so the row must be pushed)."""

    values: dict[str, Any]
    sources: dict[str, str]
    conflicts: list[str] = field(default_factory=list)
    decided: dict[str, str] = field(default_factory=dict)
    by_owner: list[str] = field(default_factory=list)
    pending: bool = False

    @property
    def held(self) -> bool:
        return any(side == "hold" for side in self.decided.values())

    @property
    def outcome(self) -> str:
        """'held' (a person decides), 'push' (local values to send) or 'synced'."""
        if self.held:
            return "held"
        return "push" if self.pending else "synced"

    @property
    def resolution(self) -> str:
        """How the conflicts went: qbo_wins, local_wins, mixed (some each way), held, or
        merged (no field conflicted)."""
        if not self.conflicts:
            return "merged"
        if self.held:
            return "held"
        sides = set(self.decided.values())
        if sides == {"qbo"}:
            return "qbo_wins"
        if sides == {"local"}:
            return "local_wins"
        return "mixed"


def mergeable_kinds(entity: str) -> dict[str, mapping.Kind]:
    """The fields a merge decides (key → value kind), as mapping.from_qbo names them: writable
    fields, references as "<column>_qbo_id", the voided flag, and an invoice's "lines"."""
    spec = mapping.ENTITIES[entity]
    kinds: dict[str, mapping.Kind] = {f.column: f.kind for f in spec.fields if not f.read_only}
    for ref in spec.references:
        kinds[mapping.reference_key(ref.column)] = mapping.TEXT
    if spec.voided_column:
        kinds[spec.voided_column] = mapping.BOOL
    if entity == "invoices":
        kinds[LINES] = mapping.TEXT  # compared by `lines_key`, never by its kind
    return kinds


def qbo_owned(entity: str) -> list[str]:
    """The columns QBO computes for `entity` (read-only fields and derived ones): always QBO's."""
    spec = mapping.ENTITIES[entity]
    columns = [f.column for f in spec.fields if f.read_only]
    if spec.derived is not None:
        columns += sorted(spec.derived({}))
    return columns


def normal(kind: mapping.Kind, value: Any) -> Any:
    """A value as it compares: decimals as numbers, empty text as None, addresses by their
    kept keys, dates by their text."""
    if value is None or value == "":
        return None
    if kind is mapping.DECIMAL:
        try:
            return Decimal(str(value)).normalize()
        except InvalidOperation:
            return str(value)
    if kind is mapping.BOOL:
        return bool(value)
    if kind is mapping.ADDRESS:
        return mapping.ADDRESS.read(value)
    if kind is mapping.DATE:
        return str(value)[:10]
    return str(value)


def lines_key(lines: Sequence[Mapping[str, Any]] | None) -> tuple:
    """An invoice's lines as they compare: in order, each its QBO line Id, its item's QBO Id
    and its mapped values (quantity 1 and unit price = amount when absent, as a pull reads)."""
    key = []
    for line in lines or ():
        values = {f.column: normal(f.kind, line.get(f.column)) for f in mapping.LINE_FIELDS}
        if values["quantity"] is None:
            values["quantity"] = Decimal(1)
        if values["unit_price"] is None:
            values["unit_price"] = values["amount"] or Decimal(0)
        key.append(
            (
                normal(mapping.TEXT, line.get("qbo_line_id")),
                normal(mapping.TEXT, line.get(mapping.reference_key("item_id"))),
                *(values[f.column] for f in mapping.LINE_FIELDS),
            )
        )
    return tuple(key)


def same(kind: mapping.Kind, key: str, a: Any, b: Any) -> bool:
    if key == LINES:
        return lines_key(a) == lines_key(b)
    return normal(kind, a) == normal(kind, b)


def decide(entity: str, key: str, policy: str, owners: Mapping[str, str]) -> tuple[str, bool]:
    """Who wins a conflict on field `key`: ('qbo' | 'local' | 'hold', decided by an owner)."""
    column = key[: -len("_qbo_id")] if key.endswith("_qbo_id") else key
    owner = owners.get(f"{entity}.{column}")
    if owner in OWNERS:
        return owner, True
    if policy == "local_wins":
        return "local", False
    if policy == "hold":
        return "hold", False
    return "qbo", False


def merge(
    entity: str,
    base: Mapping[str, Any] | None,
    local: Mapping[str, Any],
    remote: Mapping[str, Any],
    policy: str = "qbo_wins",
    owners: Mapping[str, str] | None = None,
) -> Merge:
    """Merge `local` and `remote` (rows keyed as mapping.from_qbo keys them, an invoice's
    "lines" as mapping.invoice_lines rows) against `base`. A missing base (the row was never
    stored with QBO's object) counts every difference as changed on both sides."""
    owners = owners or {}
    result = Merge(values={}, sources={})
    kinds = mergeable_kinds(entity)
    for key, kind in kinds.items():
        here, there = local.get(key), remote.get(key)
        if same(kind, key, here, there):
            result.values[key], result.sources[key] = there, "remote"
            continue
        local_changed = base is None or not same(kind, key, base.get(key), here)
        remote_changed = base is None or not same(kind, key, base.get(key), there)
        if local_changed and not remote_changed:
            result.values[key], result.sources[key] = here, "local"
            continue
        if remote_changed and not local_changed:
            result.values[key], result.sources[key] = there, "remote"
            continue
        winner, by_owner = decide(entity, key, policy, owners)
        result.conflicts.append(key)
        result.decided[key] = winner
        if by_owner:
            result.by_owner.append(key)
        if winner == "qbo":
            result.values[key], result.sources[key] = there, "remote"
        else:  # local, or held: the row keeps its value until a person decides
            result.values[key], result.sources[key] = here, "local"
    result.pending = any(
        not same(kinds[key], key, value, remote.get(key)) for key, value in result.values.items()
    )
    return result


# ----------------------------------------------------------------------------- rows and records


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


def _loads(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def settings(plpy: Any, org: str) -> tuple[str, dict[str, str]]:
    """The organization's conflict policy and field owners."""
    row = db.execute(plpy, SETTINGS, ["uuid"], [org])[0]
    policy = row["policy"] if row["policy"] in POLICIES else "qbo_wins"
    return policy, json.loads(row["owners"] or "{}")


def read_rows(
    plpy: Any,
    org: str,
    entity: str,
    qbo_ids: Sequence[str] | None = None,
    row_ids: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The rows a merge needs (one statement for a page): every column, "<column>_qbo_id" for
    each reference, an invoice's lines, and the held conflict waiting on the row, if any."""
    refs = {ref.column: ref.entity for ref in mapping.ENTITIES[entity].references}
    return [
        _loads(r["row"])
        for r in db.execute(
            plpy,
            READ,
            ["uuid", "text", "text[]", "uuid[]", "text"],
            [org, entity, list(qbo_ids or []), list(row_ids or []), json.dumps(refs)],
        )
    ]


def local_values(entity: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """A row read by `read_rows` keyed as mapping.from_qbo keys an object (lines included)."""
    values = {key: row.get(key) for key in mergeable_kinds(entity)}
    if entity == "invoices":
        values[LINES] = list(row.get("lines") or [])
    return values


def remote_values(entity: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """QBO object `obj` mapped (mapping.from_qbo), with an invoice's lines."""
    values = mapping.from_qbo(entity, obj)
    if entity == "invoices":
        values[LINES] = mapping.invoice_lines(obj)
    return values


def _subset(values: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {key: values.get(key) for key in keys}


def merge_row(
    entity: str,
    row: Mapping[str, Any],
    obj: Mapping[str, Any],
    policy: str,
    owners: Mapping[str, str],
    detected_by: str,
) -> tuple[Merge, dict[str, Any]]:
    """Merge QBO object `obj` into `row`; returns the merge and what apply_merges takes."""
    base_obj = row.get("qbo_raw")
    base = remote_values(entity, base_obj) if isinstance(base_obj, Mapping) else None
    local = local_values(entity, row)
    remote = remote_values(entity, obj)
    outcome = merge(entity, base, local, remote, policy, owners)
    conflict = None
    if outcome.conflicts:
        resolved = {
            key: outcome.values[key] for key in outcome.conflicts if outcome.decided[key] != "hold"
        }
        conflict = {
            "fields": outcome.conflicts,
            "local_values": _subset(local, outcome.conflicts),
            "remote_values": _subset(remote, outcome.conflicts),
            "base_values": _subset(base or {}, outcome.conflicts),
            "policy": policy,
            "status": "held" if outcome.held else "resolved",
            "resolution": outcome.resolution,
            "resolved_values": resolved,
            "detected_by": detected_by,
        }
    return outcome, _change(entity, row, remote, obj, outcome, conflict)


def _change(
    entity: str,
    row: Mapping[str, Any],
    remote: Mapping[str, Any],
    obj: Mapping[str, Any] | None,
    outcome: Merge,
    conflict: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """One element of qbo_sync.apply_merges' array: the values to write (the fields whose merged
    value is not the row's own, and everything QBO computes), QBO's object as the new base, the
    status, the lines to take from QBO, and the conflict to record."""
    spec = mapping.ENTITIES[entity]
    local = local_values(entity, row)
    kinds = mergeable_kinds(entity)
    changed = [
        key
        for key, value in outcome.values.items()
        if key != LINES and not same(kinds.get(key, mapping.TEXT), key, value, local.get(key))
    ]
    ref_keys = {mapping.reference_key(ref.column): ref for ref in spec.references}
    columns = [key for key in changed if key not in ref_keys] + qbo_owned(entity)
    refs = {ref_keys[key].column: ref_keys[key].entity for key in changed if key in ref_keys}
    values = {key: outcome.values[key] for key in changed}
    values.update({column: remote.get(column) for column in qbo_owned(entity)})
    lines = None
    if entity == "invoices" and outcome.sources.get(LINES) == "remote":
        if not same(kinds[LINES], LINES, remote.get(LINES), local.get(LINES)):
            lines = [
                line | {"invoice_qbo_id": str(row["qbo_id"])} for line in remote.get(LINES) or []
            ]
    if obj is not None:
        values.update(
            # a row held for a person keeps the SyncToken it had: nothing can update QBO from it
            # until the person decides (a push of it meets 5010, and merge_remote finds it held)
            qbo_sync_token=row.get("qbo_sync_token")
            if outcome.held
            else remote.get("qbo_sync_token"),
            qbo_created_at=remote.get("qbo_created_at"),
            qbo_updated_at=remote.get("qbo_updated_at"),
            qbo_raw=obj,
        )
    return {
        "id": row["id"],
        "version": row["qbo_local_version"],
        "status": "conflict" if outcome.held else ("pending" if outcome.pending else "synced"),
        "columns": columns,
        "refs": refs,
        "values": values,
        "new_base": obj is not None,
        "lines": lines,
        "conflict": conflict,
    }


def apply(plpy: Any, org: str, entity: str, changes: Sequence[Mapping[str, Any]]) -> set[str]:
    """Apply merge outcomes (one statement); returns the ids of the rows written (a row changed
    locally since it was read is left alone: its version moved)."""
    if not changes:
        return set()
    result = json.loads(
        db.execute(plpy, APPLY, ["uuid", "text", "text"], [org, entity, _dumps(list(changes))])[0][
            "result"
        ]
    )
    return set(result["applied"])


def record_held(plpy: Any, org: str, entity: str, objects: Mapping[str, Mapping[str, Any]]) -> int:
    """QBO's newer values for rows held for a person (qbo_id → QBO object): recorded in the held
    conflict's remote values; the rows stay as they are, status 'conflict'."""
    if not objects:
        return 0
    updates = [
        {"qbo_id": qbo_id, "remote": remote_values(entity, obj)} for qbo_id, obj in objects.items()
    ]
    return db.execute(plpy, RECORD_HELD, ["uuid", "text", "text"], [org, entity, _dumps(updates)])[
        0
    ]["recorded"]


def merge_pulled(
    plpy: Any, org: str, entity: str, objects: Mapping[str, Mapping[str, Any]]
) -> dict[str, int]:
    """The rows a pull found changed both here and in QBO (qbo_id → QBO's object): read in one
    statement, merged, applied in one statement. Rows held for a person only record QBO's newer
    values. Returns counts: merged, conflicts, held_for_person, stale (changed meanwhile)."""
    counts = {"merged": 0, "conflicts": 0, "held_for_person": 0, "stale": 0}
    if not objects:
        return counts
    policy, owners = settings(plpy, org)
    rows = read_rows(plpy, org, entity, qbo_ids=sorted(objects))
    changes, outcomes, waiting = [], {}, {}
    for row in rows:
        obj = objects.get(row["qbo_id"])
        if obj is None:
            continue
        if row.get("held_conflict_id"):
            waiting[row["qbo_id"]] = obj
            continue
        outcome, change = merge_row(entity, row, obj, policy, owners, "pull")
        changes.append(change)
        outcomes[row["id"]] = outcome
    applied = apply(plpy, org, entity, changes)
    record_held(plpy, org, entity, waiting)
    counts["held_for_person"] += len(waiting)
    for row_id, outcome in outcomes.items():
        if row_id not in applied:
            counts["stale"] += 1
            continue
        counts["merged"] += 1
        counts["conflicts"] += bool(outcome.conflicts)
        counts["held_for_person"] += outcome.held
    return counts


def merge_remote(ctx: Any, entity: str, row_id: str, remote: dict) -> str:
    """QBO's current object `remote` (as QBO returns it) merged into local row `row_id`, after
    QBO refused a push with 5010 (stale SyncToken). Stores the new SyncToken and base, records a
    conflict (detected_by 'push') when fields conflicted. Returns 'push' (local values still to
    send: the row is pending with QBO's SyncToken), 'synced' (nothing left to send) or 'held'
    (a person decides; the row is 'conflict'). Does not commit: the caller's transaction does."""
    plpy, org = ctx.plpy, ctx.organization_id
    policy, owners = settings(plpy, org)
    for _attempt in range(3):  # a local change made meanwhile: read it again
        rows = read_rows(plpy, org, entity, row_ids=[row_id])
        if not rows:
            raise LookupError(f"{entity} row {row_id} is not there to merge into")
        row = rows[0]
        if row.get("held_conflict_id"):
            record_held(plpy, org, entity, {row["qbo_id"]: remote})
            return "held"
        outcome, change = merge_row(entity, row, remote, policy, owners, "push")
        if row_id in apply(plpy, org, entity, [change]):
            return outcome.outcome
    raise RuntimeError(f"{entity} row {row_id} kept changing while QBO's values were merged")


# ----------------------------------------------------------------------------- a person's choice


def resolve(plpy: Any, conflict_id: str, choice: str, custom: Mapping[str, Any] | None) -> dict:
    """Apply a person's `choice` on a held conflict ('qbo': QBO's values of the held fields,
    'local': the row's, 'custom': `custom` values for them). The row is pending when its values
    then differ from QBO's (the next push sends them with the stored SyncToken), else synced.
    The caller (public.qbo_sync_resolve_conflict) has checked the right to act and locked the
    conflict. Returns what was done."""
    if choice not in ("qbo", "local", "custom"):
        raise ValueError(f"choice must be 'qbo', 'local' or 'custom', not {choice!r}")
    conflict = _loads(db.execute(plpy, CONFLICT, ["uuid"], [conflict_id])[0]["conflict"])
    entity, org = conflict["entity"], conflict["organization_id"]
    decided = conflict.get("resolved_values") or {}
    held = [key for key in conflict["fields"] if key not in decided]
    rows = read_rows(plpy, org, entity, row_ids=[conflict["local_id"]])
    if not rows:
        raise LookupError("the conflict's row is gone")
    row = rows[0]
    # a merge conflict is about the QBO object the row is linked to; another one (a create whose
    # name QBO says is taken by another object) has no base: the row is simply sent again
    merged_here = row.get("qbo_id") is not None and row.get("qbo_id") == conflict.get("qbo_id")
    if choice == "qbo" and not merged_here:
        raise ValueError(
            "this conflict is about another QBO object than the row's: choose 'local' or "
            "'custom' (new values for the row, pushed again)"
        )
    local = local_values(entity, row) | {
        key: row.get(key) for key in conflict["fields"] if key in row
    }
    if choice == "qbo":
        chosen = {key: conflict["remote_values"].get(key) for key in held}
    elif choice == "local":
        chosen = {key: local.get(key) for key in held}
    else:
        custom = dict(custom or {})
        missing = [key for key in held if key not in custom]
        unknown = [key for key in custom if key not in held]
        if missing or unknown or LINES in custom:
            raise ValueError(
                "custom values must name exactly the held fields "
                f"{held} (lines: choose 'qbo' or 'local'); missing {missing}, unknown {unknown}"
            )
        chosen = custom
    values = local | chosen
    base_obj = row.get("qbo_raw") or {}
    base = remote_values(entity, base_obj)
    kinds = mergeable_kinds(entity)
    outcome = Merge(
        values=values,
        sources={key: "remote" if key in chosen and choice == "qbo" else "local" for key in values},
    )
    outcome.pending = not merged_here or any(
        not same(kinds.get(key, mapping.TEXT), key, value, base.get(key))
        for key, value in values.items()
    )
    # the base becomes the row's own again: its SyncToken too (kept back while it was held)
    change = _change(entity, row, base, base_obj if merged_here else None, outcome, None)
    change["lines"] = None
    if choice == "qbo" and LINES in chosen:
        if not same(kinds[LINES], LINES, chosen[LINES], local.get(LINES)):
            change["lines"] = [
                line | {"invoice_qbo_id": str(row["qbo_id"])} for line in chosen[LINES] or []
            ]
    # what QBO computes stays as the row has it (no new object from QBO here)
    change["columns"] = [c for c in change["columns"] if c not in qbo_owned(entity)]
    for column in qbo_owned(entity):
        change["values"].pop(column, None)
    if not apply(plpy, org, entity, [change]):
        raise RuntimeError("the conflict's row changed while it was being resolved; try again")
    db.execute(
        plpy,
        RESOLVED,
        ["uuid", "text", "text"],
        [conflict_id, choice, _dumps(decided | chosen)],
    )
    return {
        "conflict_id": conflict_id,
        "choice": choice,
        "fields": held,
        "row_status": change["status"],
    }
