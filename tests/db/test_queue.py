"""The sync queue: folding enqueue, claim order, SKIP LOCKED concurrency, leases, backoff, limits."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest


def enqueue(conn, org, endpoint="customers", direction="pull", priority="normal", ids=None):
    return conn.execute(
        "SELECT qbo_sync.enqueue(%s, %s, %s, %s, %s)", (org, endpoint, direction, priority, ids)
    ).fetchone()[0]


def claim(conn, n=1, lease=None, worker="test"):
    return conn.execute(
        "SELECT id, lease_id, sync_endpoint, priority::text, attempts"
        " FROM qbo_sync.claim(%s::integer, %s, %s::numeric)",
        (n, worker, lease),
    ).fetchall()


def job(conn, job_id):
    cur = conn.execute("SELECT * FROM qbo_sync_queue WHERE id = %s", (job_id,))
    names = [c.name for c in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


def test_identical_pending_jobs_fold_into_one(conn, org):
    first = enqueue(conn, org, ids=["3", "1"], priority="low")
    second = enqueue(conn, org, ids=["2", "3"], priority="high")
    assert first == second
    row = job(conn, first)
    assert row["entity_ids"] == ["1", "2", "3"]
    assert row["priority"] == "high"  # raised, never lowered
    third = enqueue(conn, org, ids=["9"], priority="low")
    assert third == first and job(conn, first)["priority"] == "high"
    assert conn.execute("SELECT count(*) FROM qbo_sync_queue").fetchone()[0] == 1


def test_a_whole_entity_job_absorbs_targeted_ones(conn, org):
    first = enqueue(conn, org, ids=["1"])
    assert enqueue(conn, org, ids=None) == first
    assert job(conn, first)["entity_ids"] is None
    assert enqueue(conn, org, ids=["7"]) == first
    assert job(conn, first)["entity_ids"] is None


def test_different_jobs_do_not_fold(conn, org):
    ids = {
        enqueue(conn, org, "customers", "pull"),
        enqueue(conn, org, "customers", "push"),
        enqueue(conn, org, "items", "pull"),
    }
    assert len(ids) == 3


def test_no_folding_into_a_job_already_claimed(conn, org):
    first = enqueue(conn, org)
    claim(conn)
    second = enqueue(conn, org)
    assert second != first
    assert job(conn, second)["status"] == "pending"


def test_concurrent_enqueues_fold(connect, conn, org):
    """Two sessions enqueueing the same job at once still leave a single job when the second may
    wait (trigger_qbo_sync): it waits for the first to commit, within a bound."""
    a, b = connect(autocommit=False), connect(autocommit=False)
    first = enqueue(a, org, ids=["1"])
    result: list = []
    thread = threading.Thread(
        target=lambda: result.append(
            b.execute(
                "SELECT qbo_sync.enqueue(%s, 'customers', 'pull', 'normal', %s, 'manual', '{}', true)",
                (org, ["2"]),
            ).fetchone()[0]
        )
    )
    thread.start()
    wait_for_advisory_waiter(conn)
    a.commit()
    thread.join(10)
    b.commit()
    assert result == [first]
    assert job(conn, first)["entity_ids"] == ["1", "2"]


def wait_for_advisory_waiter(conn, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()[0]:
            return
        time.sleep(0.01)
    raise AssertionError("nobody waited for the enqueue lock")


def test_a_held_enqueue_lock_never_stalls_an_enqueue(connect, conn, org):
    """Whoever holds the enqueue lock (an open transaction, or any role calling pg_advisory_lock
    on the key), enqueue does not wait for it unboundedly: the worker's enqueues do not wait at
    all, and trigger_qbo_sync waits at most queue.api_lock_timeout_ms, then queues its own job."""
    holder = connect(autocommit=False)
    first = enqueue(holder, org, ids=["1"])  # holds the lock until it commits
    started = time.monotonic()
    second = enqueue(conn, org, ids=["2"])  # no wait
    assert time.monotonic() - started < 0.5
    conn.execute(
        "UPDATE qbo_sync.settings SET value = '300' WHERE key = 'queue.api_lock_timeout_ms'"
    )
    try:
        third = conn.execute(
            "SELECT qbo_sync.enqueue(%s, 'customers', 'pull', 'normal', %s, 'manual', '{}', true)",
            (org, ["3"]),
        ).fetchone()[0]
        assert 0.25 < time.monotonic() - started < 2
    finally:
        conn.execute(
            "UPDATE qbo_sync.settings SET value = '2000' WHERE key = 'queue.api_lock_timeout_ms'"
        )
    holder.commit()
    assert len({first, second, third}) == 3  # none lost, none waited for
    # the bounded wait did not leave its lock_timeout behind in the caller's session
    assert conn.execute("SHOW lock_timeout").fetchone()[0] == "0"


def test_claim_order_is_priority_then_due_time_then_age(conn, org):
    made = [
        enqueue(conn, org, "items", "pull", "low"),
        enqueue(conn, org, "customers", "pull", "urgent"),
        enqueue(conn, org, "invoices", "pull", "normal"),
        enqueue(conn, org, "payments", "pull", "urgent"),
        enqueue(conn, org, "items", "push", "high"),
    ]
    claimed = [row[0] for row in claim(conn, 10)]
    assert claimed == [made[1], made[3], made[4], made[2], made[0]]


def test_a_job_given_back_goes_behind_work_that_was_due_before_it(conn, org):
    """Claim order is priority, then when a job became due (run_at), then age: a long job that
    hands itself back (or a busy organization's job) does not jump ahead of jobs queued
    while it ran."""
    older = enqueue(conn, org, "customers")
    newer = enqueue(conn, org, "items")
    ((taken, lease, *_),) = claim(conn, 1)
    assert taken == older
    conn.execute("SELECT qbo_sync.release(%s, %s, 0, 'continues')", (older, lease))
    assert [row[0] for row in claim(conn, 2)] == [newer, older]


def test_claim_takes_at_most_n_and_sets_a_lease(conn, org):
    for endpoint in ("items", "customers", "invoices"):
        enqueue(conn, org, endpoint)
    rows = claim(conn, 2, lease=60)
    assert len(rows) == 2
    row = job(conn, rows[0][0])
    assert row["status"] == "processing" and row["attempts"] == 1
    assert row["lease_id"] == rows[0][1]
    lease = conn.execute(
        "SELECT locked_until - now() FROM qbo_sync_queue WHERE id = %s", (rows[0][0],)
    )
    assert 59 <= lease.fetchone()[0].total_seconds() <= 60
    assert len(claim(conn, 5)) == 1
    assert claim(conn, 5) == []


def test_jobs_scheduled_later_are_not_claimed(conn, org):
    job_id = enqueue(conn, org)
    conn.execute(
        "UPDATE qbo_sync_queue SET run_at = now() + interval '1 hour' WHERE id = %s", (job_id,)
    )
    assert claim(conn) == []


def test_two_sessions_claim_disjoint_jobs(connect, conn, org):
    # 20 distinct jobs, inserted directly (enqueue would fold identical ones)
    conn.execute(
        "INSERT INTO qbo_sync_queue (organization_id, sync_endpoint, entity_ids)"
        " SELECT %s, 'customers', ARRAY[g::text] FROM generate_series(1, 20) AS g",
        (org,),
    )
    a, b = connect(autocommit=False), connect(autocommit=False)
    from_a = {r[0] for r in claim(a, 8)}  # a holds its row locks (transaction open)
    from_b = {r[0] for r in claim(b, 8)}  # b skips them instead of waiting
    assert len(from_a) == 8 and len(from_b) == 8
    assert not from_a & from_b
    a.commit()
    b.commit()
    assert (
        conn.execute("SELECT count(*) FROM qbo_sync_queue WHERE status = 'processing'").fetchone()[
            0
        ]
        == 16
    )


def test_many_workers_never_claim_a_job_twice(db_dsn, conn, org):
    conn.execute(
        "INSERT INTO qbo_sync_queue (organization_id, sync_endpoint, entity_ids)"
        " SELECT %s, 'items', ARRAY[g::text] FROM generate_series(1, 400) AS g",
        (org,),
    )
    seen: list[list] = []

    def worker() -> None:
        mine = []
        with psycopg.connect(db_dsn, autocommit=True) as c:
            while rows := claim(c, 3):
                for job_id, lease, *_ in rows:
                    assert c.execute(
                        "SELECT qbo_sync.complete(%s, %s)", (job_id, lease)
                    ).fetchone()[0]
                    mine.append(job_id)
        seen.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    everything = [j for mine in seen for j in mine]
    assert len(everything) == 400 and len(set(everything)) == 400
    assert (
        conn.execute("SELECT count(*) FROM qbo_sync_queue WHERE status = 'completed'").fetchone()[0]
        == 400
    )


def test_a_dead_workers_job_comes_back_after_its_lease(db_dsn, conn, org):
    job_id = enqueue(conn, org)
    with psycopg.connect(db_dsn, autocommit=True) as doomed:
        (claimed,) = claim(doomed, lease=60)
        assert claimed[0] == job_id
    # the worker is gone without completing; before the lease passes nothing is reclaimed
    assert conn.execute("SELECT qbo_sync.reclaim_expired()").fetchone()[0] == 0
    assert claim(conn) == []
    conn.execute(
        "UPDATE qbo_sync_queue SET locked_until = now() - interval '1 second'"
    )  # it passed
    assert conn.execute("SELECT qbo_sync.reclaim_expired()").fetchone()[0] == 1
    row = job(conn, job_id)
    assert row["status"] == "pending" and "lease expired" in row["last_error"]
    (again,) = claim(conn)
    assert again[0] == job_id and again[4] == 2  # second attempt
    # the dead worker's lease no longer completes the job
    assert not conn.execute("SELECT qbo_sync.complete(%s, %s)", (job_id, claimed[1])).fetchone()[0]
    assert conn.execute("SELECT qbo_sync.complete(%s, %s)", (job_id, again[1])).fetchone()[0]


def test_reclaim_after_the_last_attempt_fails_the_job(conn, org):
    job_id = enqueue(conn, org)
    conn.execute("UPDATE qbo_sync_queue SET max_attempts = 1 WHERE id = %s", (job_id,))
    claim(conn, lease=60)
    conn.execute("UPDATE qbo_sync_queue SET locked_until = now() - interval '1 second'")
    conn.execute("SELECT qbo_sync.reclaim_expired()")
    row = job(conn, job_id)
    assert row["status"] == "failed" and "lease expired" in row["last_error"]


def test_failure_backs_off_exponentially_with_jitter(conn, org):
    conn.execute(
        "UPDATE qbo_sync.settings SET value = '10' WHERE key = 'queue.backoff_base_seconds'"
    )
    conn.execute("UPDATE qbo_sync.settings SET value = '0.25' WHERE key = 'queue.backoff_jitter'")
    try:
        job_id = enqueue(conn, org)
        conn.execute("UPDATE qbo_sync_queue SET max_attempts = 10 WHERE id = %s", (job_id,))
        delays = []
        for attempt in range(1, 5):
            conn.execute("UPDATE qbo_sync_queue SET run_at = now() WHERE id = %s", (job_id,))
            (claimed,) = claim(conn)
            status = conn.execute(
                "SELECT qbo_sync.fail(%s, %s, %s)", (job_id, claimed[1], f"boom {attempt}")
            ).fetchone()[0]
            assert status == "pending"
            delay = conn.execute(
                "SELECT extract(epoch FROM run_at - now()) FROM qbo_sync_queue WHERE id = %s",
                (job_id,),
            ).fetchone()[0]
            base = 10 * 2 ** (attempt - 1)
            assert base <= float(delay) <= base * 1.25 + 0.01
            delays.append(float(delay))
        assert job(conn, job_id)["last_error"] == "boom 4"
    finally:
        conn.execute(
            "UPDATE qbo_sync.settings SET value = '10' WHERE key = 'queue.backoff_base_seconds'"
        )


def test_backoff_is_capped_and_jittered(conn):
    conn.execute(
        "UPDATE qbo_sync.settings SET value = '100' WHERE key = 'queue.backoff_max_seconds'"
    )
    try:
        values = [
            conn.execute("SELECT qbo_sync.backoff_seconds(20)").fetchone()[0] for _ in range(30)
        ]
        assert all(100 <= v <= 125 for v in values)
        assert len(set(values)) > 1  # jitter spreads retries
    finally:
        conn.execute(
            "UPDATE qbo_sync.settings SET value = '3600' WHERE key = 'queue.backoff_max_seconds'"
        )


def test_attempt_limit_marks_the_job_failed_and_keeps_the_error(conn, org):
    job_id = enqueue(conn, org)
    conn.execute("UPDATE qbo_sync_queue SET max_attempts = 2 WHERE id = %s", (job_id,))
    statuses = []
    for attempt in (1, 2):
        conn.execute("UPDATE qbo_sync_queue SET run_at = now() WHERE id = %s", (job_id,))
        (claimed,) = claim(conn)
        statuses.append(
            conn.execute(
                "SELECT qbo_sync.fail(%s, %s, %s)", (job_id, claimed[1], f"QBO 503 #{attempt}")
            ).fetchone()[0]
        )
    assert statuses == ["pending", "failed"]
    row = job(conn, job_id)
    assert row["last_error"] == "QBO 503 #2" and row["completed_at"] is not None
    conn.execute("UPDATE qbo_sync_queue SET run_at = now() WHERE id = %s", (job_id,))
    assert claim(conn) == []


def test_a_non_retryable_failure_fails_at_once(conn, org):
    job_id = enqueue(conn, org)
    (claimed,) = claim(conn)
    assert (
        conn.execute(
            "SELECT qbo_sync.fail(%s, %s, 'bad data', false)", (job_id, claimed[1])
        ).fetchone()[0]
        == "failed"
    )


def job_in_state(conn, org, state: str):
    """A job in `state`, reached through the queue's own functions."""
    job_id = enqueue(conn, org)
    if state == "pending":
        return job_id
    (claimed,) = claim(conn)
    if state == "processing":
        return job_id
    if state == "completed":
        conn.execute("SELECT qbo_sync.complete(%s, %s)", (job_id, claimed[1]))
    elif state == "failed":
        conn.execute("SELECT qbo_sync.fail(%s, %s, 'x', false)", (job_id, claimed[1]))
    elif state == "cancelled":
        conn.execute("SELECT qbo_sync_cancel(%s)", (job_id,))
    assert job(conn, job_id)["status"] == state
    return job_id


@pytest.mark.parametrize("state", ["pending", "processing", "completed", "failed", "cancelled"])
def test_requeue_handles_every_state(conn, org, state):
    job_id = job_in_state(conn, org, state)
    conn.execute("UPDATE qbo_sync_queue SET run_at = now() + interval '1 hour'")  # a backoff
    assert conn.execute("SELECT qbo_sync_requeue(%s)", (job_id,)).fetchone()[0] == job_id
    row = job(conn, job_id)
    assert row["status"] == "pending" and row["lease_id"] is None and row["locked_until"] is None
    assert row["run_at"] <= conn.execute("SELECT now()").fetchone()[0]  # runs now
    assert row["attempts"] == (1 if state == "processing" else 0)
    # and the worker can claim it at once
    assert [c[0] for c in claim(conn)] == [job_id]


@pytest.mark.parametrize(
    ("state", "cancelled"),
    [
        ("pending", True),
        ("processing", True),
        ("completed", False),
        ("failed", False),
        ("cancelled", False),
    ],
)
def test_cancel_handles_every_state(conn, org, state, cancelled):
    job_id = job_in_state(conn, org, state)
    assert conn.execute("SELECT qbo_sync_cancel(%s)", (job_id,)).fetchone()[0] is cancelled
    row = job(conn, job_id)
    assert row["status"] == ("cancelled" if cancelled else state)
    assert row["lease_id"] is None or state == "processing" and not cancelled


def test_a_processing_job_cancelled_by_hand_cannot_be_completed_by_its_worker(conn, org):
    job_id = enqueue(conn, org)
    (claimed,) = claim(conn)
    assert conn.execute("SELECT qbo_sync_cancel(%s)", (job_id,)).fetchone()[0]
    assert (
        conn.execute("SELECT qbo_sync.complete(%s, %s)", (job_id, claimed[1])).fetchone()[0]
        is False
    )
    assert (
        conn.execute("SELECT qbo_sync.fail(%s, %s, 'x')", (job_id, claimed[1])).fetchone()[0]
        is None
    )
    assert job(conn, job_id)["status"] == "cancelled"


def test_requeue_of_an_unknown_job_is_a_clear_error(conn, org):
    with pytest.raises(psycopg.errors.NoDataFound, match="does not exist"):
        conn.execute("SELECT qbo_sync_requeue(gen_random_uuid())")
    assert conn.execute("SELECT qbo_sync_cancel(gen_random_uuid())").fetchone()[0] is False


def test_requeue_and_cancel_wait_a_bounded_time_for_a_held_job(conn, connect, org):
    """A worker extending a long job's lease holds its row; a change by hand is told so."""
    job_id = enqueue(conn, org)
    (claimed,) = claim(conn)
    worker = connect(autocommit=False)
    worker.execute("SELECT qbo_sync.extend_lease(%s, %s, 600)", (job_id, claimed[1]))
    started = time.monotonic()
    with pytest.raises(psycopg.errors.LockNotAvailable, match="is busy"):
        conn.execute("SELECT qbo_sync_cancel(%s)", (job_id,))
    with pytest.raises(psycopg.errors.LockNotAvailable, match="is busy"):
        conn.execute("SELECT qbo_sync_requeue(%s)", (job_id,))
    assert time.monotonic() - started < 10
    worker.commit()
    assert conn.execute("SELECT qbo_sync_cancel(%s)", (job_id,)).fetchone()[0]


def test_release_gives_the_job_back_without_counting_the_attempt(conn, org):
    job_id = enqueue(conn, org)
    (claimed,) = claim(conn)
    assert conn.execute("SELECT qbo_sync.release(%s, %s, 0)", (job_id, claimed[1])).fetchone()[0]
    row = job(conn, job_id)
    assert row["status"] == "pending" and row["attempts"] == 0
