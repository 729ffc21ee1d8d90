"""A job handler the tests install as qbo_sync_db.testing_probe (it is not part of the product):
it calls QBO as the job's payload says, through the job's connection, so the tests can drive
the worker's real path to QBO (pacer, token refresh, 401 retry, errors) before the sync engine's
own handlers exist.

Payload keys: calls (how many CompanyInfo reads, default 1), fail_after (raise after the calls),
lose_lease (take the job's lease away, then keep the lease), write_marker (write a row before
each call, to show what was committed), pause (seconds to wait, committed, after the first call).
"""

import time

from qbo_sync_db import client, db


def run(ctx):
    payload = ctx.job.get("payload") or {}
    calls = int(payload.get("calls", 1))
    for number in range(calls):
        if payload.get("write_marker"):
            db.execute(
                ctx.plpy,
                "INSERT INTO public.probe_marks (job_id, n) VALUES ($1, $2)",
                ["uuid", "integer"],
                [ctx.job["id"], number],
            )
        ctx.connection().send(
            lambda company: client.read_request(company, "CompanyInfo", company.realm_id)
        )
        if payload.get("pause") and number == 0:
            ctx.commit()
            time.sleep(float(payload["pause"]))
    if payload.get("lose_lease"):
        # as if the job had been reclaimed while it ran: its lease is someone else's now
        db.execute(
            ctx.plpy,
            "UPDATE public.qbo_sync_queue SET lease_id = gen_random_uuid() WHERE id = $1",
            ["uuid"],
            [ctx.job["id"]],
        )
        ctx.tx.commit()
        ctx.lease.extended_at -= ctx.lease.lease_seconds  # the keeper checks now
        ctx.keep_lease()
    if payload.get("fail_after"):
        raise RuntimeError("the probe failed after its calls, as asked")
    return ctx.summary(entity_count=calls, success_count=calls)
