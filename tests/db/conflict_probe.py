"""A job handler the conflict tests install as qbo_sync_db.testing_conflict_probe (not part of
the product): it reads one object from QBO through the job's connection and merges it into a
local row with qbo_sync_db.conflicts.merge_remote, as the push does when QBO answers 5010.

Payload keys: entity, row_id (the local row), qbo_id (the QBO object to read).
"""

from qbo_sync_db import client, conflicts, mapping


def run(ctx):
    payload = ctx.job.get("payload") or {}
    entity = payload["entity"]
    qbo_entity = mapping.ENTITIES[entity].qbo_entity
    answer = ctx.connection().send(
        lambda company: client.read_request(company, qbo_entity, payload["qbo_id"])
    )
    remote = client.parse_entity(answer.data, qbo_entity)
    outcome = conflicts.merge_remote(ctx, entity, payload["row_id"], remote)
    return ctx.summary(entity_count=1, success_count=1, merge_outcome=outcome)
