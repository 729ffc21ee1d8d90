"""Adversarial review of the push (plpython/qbo_sync_db/push.py): what it got wrong, kept as
tests once fixed."""

# ruff: noqa: F811 - the `seeded` fixture is imported and then taken as an argument
from __future__ import annotations

from tests.db.qbo_jobs import connect_realm
from tests.db.test_pull import local_rows, pull, qbo_objects, seeded  # noqa: F401 - fixture
from tests.db.test_push import push
from tests.db.test_qbo_calls import outcome


def test_a_value_cleared_here_is_cleared_in_qbo(conn, seeded):
    connected = connect_realm(conn, seeded)
    pull(conn, connected.org, "customers")
    some = sorted(local_rows(conn, "customers", connected.org), key=int)[2]
    update = "UPDATE customer_profile SET notes = %s WHERE organization_id = %s AND qbo_id = %s"
    conn.execute(update, ("to be cleared", connected.org, some))
    push(conn, connected.org, "customers")
    there = next(o for o in qbo_objects(seeded, connected.access, "customers") if o["Id"] == some)
    assert there["Notes"] == "to be cleared"
    conn.execute(update, (None, connected.org, some))
    job = push(conn, connected.org, "customers")
    assert outcome(conn, job)["status"] == "completed"
    there = next(o for o in qbo_objects(seeded, connected.access, "customers") if o["Id"] == some)
    after = local_rows(conn, "customers", connected.org)[some]
    # the application cleared the notes: both sides agree they are empty
    assert after["notes"] in (None, "")
    assert there.get("Notes") in (None, "")
