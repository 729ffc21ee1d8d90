"""The queue processor qbo_sync.worker(): dispatch to handlers, completion, failure and the retry
decision, leases (lost, extended), one organization per backend, history."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from tests.conftest import make_org

#: the advisory key a blocking handler waits on, so a test can hold a job mid-run
HOLD_KEY = 4242


def make_handler(
    conn: psycopg.Connection, entity: str, body: str, language: str = "plpgsql"
) -> None:
    """Install qbo_sync.sync_<entity>(job) as the owner (the only place the worker looks)."""
    conn.execute(
        f"CREATE OR REPLACE FUNCTION qbo_sync.sync_{entity}(job qbo_sync_queue)"
        f" RETURNS jsonb LANGUAGE {language} AS $body${body}$body$"
    )


@pytest.fixture
def handlers(conn: psycopg.Connection) -> Iterator[Callable[..., None]]:
    conn.execute(
        "CREATE TABLE public.handler_calls (organization_id uuid, direction text, ids text[],"
        " at timestamptz DEFAULT clock_timestamp())"
    )
    made: list[str] = []

    def make(entity: str, body: str, language: str = "plpgsql") -> None:
        make_handler(conn, entity, body, language)
        made.append(entity)

    yield make
    for entity in made:
        conn.execute(f"DROP FUNCTION IF EXISTS qbo_sync.sync_{entity}(qbo_sync_queue)")
    conn.execute("DROP TABLE public.handler_calls")


CUSTOMERS = """
BEGIN
    INSERT INTO public.handler_calls (organization_id, direction, ids)
    VALUES (job.organization_id, job.direction, job.entity_ids);
    IF job.direction = 'push' THEN
        RAISE EXCEPTION 'QBO answered 503' USING ERRCODE = 'connection_failure';
    END IF;
    RETURN jsonb_build_object('entity_count', 3, 'success_count', 2, 'failure_count', 1);
END
"""

#: waits for the test to let go of HOLD_KEY, so the test can act while the job runs
BLOCKING = f"""
BEGIN
    PERFORM pg_advisory_xact_lock({HOLD_KEY});
    IF job.direction = 'push' THEN
        RAISE EXCEPTION 'QBO answered 400' USING ERRCODE = 'QB400';
    END IF;
    RETURN jsonb_build_object('entity_count', 1, 'success_count', 1);
END
"""


def run_worker(
    conn: psycopg.Connection, max_seconds: float = 5, max_jobs: int | None = None
) -> None:
    conn.execute("CALL qbo_sync_worker(%s, %s, true)", (max_seconds, max_jobs))


def job_row(conn: psycopg.Connection, job_id) -> dict:
    cur = conn.execute("SELECT * FROM qbo_sync_queue WHERE id = %s", (job_id,))
    names = [c.name for c in cur.description or []]
    return dict(zip(names, cur.fetchone(), strict=True))


def history(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT status, error_summary FROM qbo_sync_history ORDER BY completed_at"
    ).fetchall()


def wait_for_lock_waiter(conn: psycopg.Connection, key: int, timeout: float = 10) -> None:
    """Until some backend waits for advisory lock `key` (the handler is mid-run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s"
            " AND NOT granted",
            (key,),
        ).fetchone()[0]
        if waiting:
            return
        time.sleep(0.01)
    raise AssertionError("the handler never started waiting")


class HeldJob:
    """Runs a worker in a thread while the test holds HOLD_KEY, so the job is mid-run."""

    def __init__(self, db_dsn: str, conn: psycopg.Connection, holder: psycopg.Connection):
        self.conn, self.holder = conn, holder
        self.holder.execute("SELECT pg_advisory_lock(%s)", (HOLD_KEY,))
        self.thread = threading.Thread(target=self._work, args=(db_dsn,))
        self.error: BaseException | None = None

    def _work(self, db_dsn: str) -> None:
        try:
            with psycopg.connect(db_dsn, autocommit=True) as worker:
                worker.execute("CALL qbo_sync_worker(10, 1, true)")
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def start(self) -> None:
        self.thread.start()
        wait_for_lock_waiter(self.conn, HOLD_KEY)

    def finish(self) -> None:
        self.holder.execute("SELECT pg_advisory_unlock(%s)", (HOLD_KEY,))
        self.thread.join(15)
        assert not self.thread.is_alive() and self.error is None


def test_worker_runs_the_handler_completes_the_job_and_records_history(conn, org, handlers):
    handlers("customers", CUSTOMERS)
    job_id = conn.execute(
        "SELECT trigger_qbo_sync(%s, 'customers', 'pull', 'urgent')", (org,)
    ).fetchone()[0]
    run_worker(conn)
    row = job_row(conn, job_id)
    assert row["status"] == "completed" and row["result"]["success_count"] == 2
    assert conn.execute("SELECT organization_id, direction FROM handler_calls").fetchall() == [
        (org, "pull")
    ]
    assert conn.execute(
        "SELECT sync_type, entity_types, status, entity_count, success_count, failure_count,"
        " queue_job_id FROM qbo_sync_history"
    ).fetchall() == [("manual", ["customers"], "partial", 3, 2, 1, job_id)]


def test_a_missing_handler_fails_the_job_at_once_with_a_clear_error(conn, org):
    """An entity with neither a built-in handler (qbo_sync.entity.handler) nor a SQL one."""
    built_in = conn.execute(
        "SELECT handler FROM qbo_sync.entity WHERE entity = 'payments'"
    ).fetchone()[0]
    conn.execute("UPDATE qbo_sync.entity SET handler = NULL WHERE entity = 'payments'")
    try:
        job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'payments')", (org,)).fetchone()[0]
        run_worker(conn)
    finally:
        conn.execute(
            "UPDATE qbo_sync.entity SET handler = %s WHERE entity = 'payments'", (built_in,)
        )
    row = job_row(conn, job_id)
    assert (row["status"], row["attempts"], row["last_error_code"]) == ("failed", 1, "42883")
    assert 'no handler for sync_endpoint "payments"' in row["last_error"]
    assert "qbo_sync.sync_payments" in row["last_error"]
    assert history(conn)[0][0] == "failed"


def test_a_handler_not_owned_by_the_installer_is_not_run(conn, org, connect):
    """A function of the right name that another role owns is refused, never called: the
    built-in handler runs instead (and stops at once: the organization has no tokens)."""
    conn.execute("CREATE ROLE qbo_test_other NOLOGIN")
    try:
        make_handler(conn, "items", "BEGIN RETURN '{\"planted\": true}'; END")
        conn.execute("ALTER FUNCTION qbo_sync.sync_items(qbo_sync_queue) OWNER TO qbo_test_other")
        job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'items')", (org,)).fetchone()[0]
        run_worker(conn)
        row = job_row(conn, job_id)
        assert row["status"] == "failed" and row["result"] is None
        assert "the connection has no access token" in row["last_error"]
        assert row["last_error_code"] == "QS002"
    finally:
        conn.execute("DROP FUNCTION IF EXISTS qbo_sync.sync_items(qbo_sync_queue)")
        conn.execute("DROP ROLE qbo_test_other")


def test_a_transient_handler_error_is_retried_later(conn, org, handlers):
    handlers("customers", CUSTOMERS)
    job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'customers', 'push')", (org,)).fetchone()[0]
    run_worker(conn)
    row = job_row(conn, job_id)
    assert (row["status"], row["attempts"], row["last_error_code"]) == ("pending", 1, "08006")
    assert "QBO answered 503" in row["last_error"]
    assert conn.execute("SELECT run_at > now() FROM qbo_sync_queue").fetchone()[0]
    # the failed attempt left no half-done work behind: the handler's insert was rolled back
    assert conn.execute("SELECT count(*) FROM handler_calls").fetchone()[0] == 0
    assert "retryable, job is now pending" in history(conn)[0][1]


@pytest.mark.parametrize(
    ("raise_sql", "sqlstate", "retried"),
    [
        ("RAISE EXCEPTION 'mapping bug'", "P0001", False),
        ("PERFORM 1 / 0", "22012", False),
        ("RAISE EXCEPTION 'internal' USING ERRCODE = 'XX000'", "XX000", False),
        ("RAISE EXCEPTION 'QBO said no' USING ERRCODE = 'QB400'", "QB400", False),
        ("RAISE EXCEPTION 'reconnect' USING ERRCODE = 'QB410'", "QB410", False),
        ("RAISE EXCEPTION 'QBO 502' USING ERRCODE = 'QB500'", "QB500", True),
        ("RAISE EXCEPTION 'QBO timeout' USING ERRCODE = 'QB504'", "QB504", True),
        ("RAISE EXCEPTION 'serialization' USING ERRCODE = '40001'", "40001", True),
        ("RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'", "40P01", True),
        ("RAISE EXCEPTION 'lock timeout' USING ERRCODE = '55P03'", "55P03", True),
        ("RAISE EXCEPTION 'statement timeout' USING ERRCODE = '57014'", "57014", True),
        ("RAISE EXCEPTION 'out of memory' USING ERRCODE = '53200'", "53200", True),
    ],
)
def test_only_transient_errors_are_retried(conn, org, handlers, raise_sql, sqlstate, retried):
    handlers("items", f"BEGIN {raise_sql}; RETURN NULL; END")
    job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'items')", (org,)).fetchone()[0]
    run_worker(conn, max_jobs=1)
    row = job_row(conn, job_id)
    assert row["last_error_code"] == sqlstate and row["attempts"] == 1
    assert row["status"] == ("pending" if retried else "failed")
    assert f"SQLSTATE {sqlstate}" in row["last_error"]


def test_a_throttled_job_waits_in_the_queue_without_using_up_its_attempts(conn, org, handlers):
    """QB429 (QBO throttles the realm for longer than pacing.max_wait_seconds): the job goes
    back to the queue for that long, and however often it happens the job never fails for it."""
    handlers("items", "BEGIN RAISE EXCEPTION 'throttled' USING ERRCODE = 'QB429'; RETURN NULL; END")
    job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'items')", (org,)).fetchone()[0]
    max_attempts = job_row(conn, job_id)["max_attempts"]
    for _ in range(max_attempts + 2):
        run_worker(conn, max_jobs=1)
        row = job_row(conn, job_id)
        assert (row["status"], row["attempts"]) == ("pending", 0)
        assert "SQLSTATE QB429" in row["last_error"]
        waits = conn.execute(
            "SELECT extract(epoch FROM run_at - now()) FROM qbo_sync_queue WHERE id = %s",
            (job_id,),
        ).fetchone()[0]
        assert 25 <= waits <= 30  # pacing.max_wait_seconds
        conn.execute("UPDATE qbo_sync_queue SET run_at = now() WHERE id = %s", (job_id,))
    assert "throttled: the attempt is not counted" in history(conn)[0][1]


@pytest.mark.parametrize(
    ("body", "sqlstate"),
    [
        ("plpy.error('mapping bug')", "XX000"),
        ("raise ValueError('mapping bug')", "38000"),
    ],
)
def test_python_bugs_fail_at_once(conn, org, handlers, body, sqlstate):
    """The two SQLSTATEs PL/Python gives a bug were retried five times before."""
    handlers("invoices", body, language="plpython3u")
    job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'invoices')", (org,)).fetchone()[0]
    run_worker(conn, max_jobs=1)
    row = job_row(conn, job_id)
    assert (row["status"], row["attempts"], row["last_error_code"]) == ("failed", 1, sqlstate)
    assert "mapping bug" in row["last_error"]


def test_worker_commits_after_each_job(conn, db_dsn, org, handlers):
    """Completed jobs are visible to other sessions while the worker still runs."""
    handlers("customers", CUSTOMERS)
    conn.execute("SELECT trigger_qbo_sync(%s, 'customers', 'pull')", (org,))
    done = threading.Event()

    def work() -> None:
        with psycopg.connect(db_dsn, autocommit=True) as worker:
            worker.execute("CALL qbo_sync_worker(3)")  # keeps polling for 3 s
        done.set()

    thread = threading.Thread(target=work)
    thread.start()
    deadline = time.monotonic() + 2.5
    completed = 0
    while time.monotonic() < deadline and not completed:
        completed = conn.execute(
            "SELECT count(*) FROM qbo_sync_queue WHERE status = 'completed'"
        ).fetchone()[0]
        time.sleep(0.05)
    assert completed == 1 and not done.is_set()
    # a job queued while the worker idles is picked up within about a second
    queued_at = time.monotonic()
    conn.execute("SELECT trigger_qbo_sync(%s, 'customers', 'both')", (org,))
    while time.monotonic() - queued_at < 2:
        count = conn.execute(
            "SELECT count(*) FROM qbo_sync_queue WHERE status = 'completed'"
        ).fetchone()[0]
        if count == 2:
            break
        time.sleep(0.05)
    assert time.monotonic() - queued_at < 2
    thread.join(10)


def test_one_organization_is_worked_by_one_backend_at_a_time(conn, connect, org, handlers):
    handlers("customers", CUSTOMERS)
    conn.execute("SELECT trigger_qbo_sync(%s, 'customers', 'pull')", (org,))
    conn.execute(
        "INSERT INTO qbo_sync.organization_lock VALUES (%s) ON CONFLICT DO NOTHING", (org,)
    )
    holder = connect(autocommit=False)  # another worker, mid-job for this organization
    holder.execute(
        "SELECT FROM qbo_sync.organization_lock WHERE organization_id = %s FOR UPDATE", (org,)
    )
    run_worker(conn, max_seconds=1, max_jobs=1)
    status, attempts = conn.execute("SELECT status, attempts FROM qbo_sync_queue").fetchone()
    assert (status, attempts) == ("pending", 0)  # given back, attempt not counted
    holder.rollback()
    conn.execute("UPDATE qbo_sync_queue SET run_at = now()")
    run_worker(conn)
    assert conn.execute("SELECT status FROM qbo_sync_queue").fetchone()[0] == "completed"


def test_two_claims_at_once_give_an_organization_to_one_and_the_next_one_to_the_other(
    conn, connect, org
):
    """Both claims see the organization free (neither has committed): the first to take it keeps
    its job; the second gives its own back in its place, attempt not counted, and claims
    another organization's job instead of idling."""
    other = make_org(conn, "Other")
    first, second = (
        conn.execute("SELECT trigger_qbo_sync(%s, %s, 'pull')", (org, entity)).fetchone()[0]
        for entity in ("customers", "items")
    )
    elsewhere = conn.execute(
        "SELECT trigger_qbo_sync(%s, 'customers', 'pull')", (other,)
    ).fetchone()[0]
    second_run_at = job_row(conn, second)["run_at"]
    conn.execute("INSERT INTO qbo_sync.organization_lock VALUES (%s)", (org,))
    claim = "SELECT qbo_sync.worker_claim(qbo_sync.worker_begin(10, 5, true)) -> 'job' ->> 'id'"
    winner = connect(autocommit=False)
    assert winner.execute(claim).fetchone()[0] == str(first)  # not committed yet
    assert conn.execute(claim).fetchone()[0] == str(elsewhere)
    row = job_row(conn, second)
    assert (row["status"], row["attempts"], row["run_at"]) == ("pending", 0, second_run_at)
    winner.commit()
    held = conn.execute(
        "SELECT job_id FROM qbo_sync.organization_lock WHERE organization_id = %s", (org,)
    ).fetchone()[0]
    assert held == first
    # while the winner's job holds the organization, its next job is not claimed
    assert conn.execute(claim).fetchone()[0] is None
    assert job_row(conn, second)["status"] == "pending"


def test_a_job_given_back_before_it_runs_gives_its_organization_back(conn, handlers):
    """A job whose connection is not active fails in the prepare step, after its claim took the
    organization: the organization is free again for its next job at once."""
    handlers("customers", CUSTOMERS)
    org = make_org(conn, "Disconnected")
    failed = conn.execute("SELECT trigger_qbo_sync(%s, 'customers', 'pull')", (org,)).fetchone()[0]
    conn.execute(
        "UPDATE qbo_connection SET is_active = false, inactive_reason = 'invalid_grant'"
        " WHERE organization_id = %s",
        (org,),
    )
    run_worker(conn, max_seconds=2, max_jobs=1)
    assert job_row(conn, failed)["status"] == "failed"
    lease = conn.execute(
        "SELECT lease_id FROM qbo_sync.organization_lock WHERE organization_id = %s", (org,)
    ).fetchone()[0]
    assert lease is None
    conn.execute(
        "UPDATE qbo_connection SET is_active = true, inactive_reason = NULL"
        " WHERE organization_id = %s",
        (org,),
    )
    done = conn.execute("SELECT trigger_qbo_sync(%s, 'customers', 'pull')", (org,)).fetchone()[0]
    run_worker(conn, max_seconds=2, max_jobs=1)
    assert job_row(conn, done)["status"] == "completed"


def test_worker_reclaims_expired_leases(conn, org, handlers):
    handlers("customers", CUSTOMERS)
    job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'customers', 'pull')", (org,)).fetchone()[0]
    conn.execute("SELECT * FROM qbo_sync.claim(1, 'crashed')")
    conn.execute("UPDATE qbo_sync_queue SET locked_until = now() - interval '1 second'")
    run_worker(conn)
    row = job_row(conn, job_id)
    assert (row["status"], row["attempts"]) == ("completed", 2)


@pytest.mark.parametrize("action", ["cancel", "requeue"])
def test_a_lease_lost_while_running_is_recorded_as_such(
    conn, connect, db_dsn, org, handlers, action
):
    handlers("items", BLOCKING)
    job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'items', 'pull')", (org,)).fetchone()[0]
    held = HeldJob(db_dsn, conn, connect())
    held.start()
    assert job_row(conn, job_id)["status"] == "processing"
    if action == "cancel":
        assert conn.execute("SELECT qbo_sync_cancel(%s)", (job_id,)).fetchone()[0] is True
    else:
        assert conn.execute("SELECT qbo_sync_requeue(%s)", (job_id,)).fetchone()[0] == job_id
    held.finish()
    row = job_row(conn, job_id)
    assert row["status"] == ("cancelled" if action == "cancel" else "pending")
    assert row["result"] is None  # the worker's outcome did not overwrite the hand-made change
    [(status, error)] = history(conn)
    assert status == "lease_lost"
    expected = "cancelled" if action == "cancel" else "pending"
    assert f"lease lost: the job is now {expected}" in error
    assert (
        f"{'cancelled' if action == 'cancel' else 'requeued'} by postgres while processing" in error
    )


def test_a_failure_after_a_lost_lease_keeps_the_error(conn, connect, db_dsn, org, handlers):
    handlers("items", BLOCKING)
    job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'items', 'push')", (org,)).fetchone()[0]
    held = HeldJob(db_dsn, conn, connect())
    held.start()
    conn.execute("SELECT qbo_sync_cancel(%s)", (job_id,))
    held.finish()
    [(status, error)] = history(conn)
    assert status == "lease_lost"
    assert "QBO answered 400 (SQLSTATE QB400)" in error and "the job is now cancelled" in error
    assert "job is now ;" not in error and not error.endswith("job is now ")
    assert job_row(conn, job_id)["status"] == "cancelled"


def test_extend_lease_keeps_the_job_and_reports_a_lost_lease(conn, org):
    job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'items')", (org,)).fetchone()[0]
    [(lease, until)] = conn.execute(
        "SELECT lease_id, locked_until FROM qbo_sync.claim(1, 'w', 30)"
    ).fetchall()
    extended = conn.execute(
        "SELECT qbo_sync.extend_lease(%s, %s, 600)", (job_id, lease)
    ).fetchone()[0]
    assert extended > until
    assert conn.execute("SELECT locked_until FROM qbo_sync_queue").fetchone()[0] == extended
    # a shorter extension never shortens the lease
    assert (
        conn.execute("SELECT qbo_sync.extend_lease(%s, %s, 1)", (job_id, lease)).fetchone()[0]
        == extended
    )
    # a wrong lease, or a lease already taken back, extends nothing
    assert (
        conn.execute(
            "SELECT qbo_sync.extend_lease(%s, gen_random_uuid(), 600)", (job_id,)
        ).fetchone()[0]
        is None
    )
    conn.execute("UPDATE qbo_sync_queue SET locked_until = now() - interval '1 second'")
    assert conn.execute("SELECT qbo_sync.reclaim_expired()").fetchone()[0] == 1
    assert (
        conn.execute("SELECT qbo_sync.extend_lease(%s, %s, 600)", (job_id, lease)).fetchone()[0]
        is None
    )


def test_a_long_job_that_extends_its_lease_is_not_reclaimed(conn, connect, db_dsn, org, handlers):
    """With a 0.2 s lease the job outlives its lease; the extension keeps it from reclaim."""
    handlers(
        "items",
        f"""BEGIN
            PERFORM qbo_sync.extend_lease(job.id, job.lease_id, 600);
            PERFORM pg_advisory_xact_lock({HOLD_KEY});
            RETURN jsonb_build_object('entity_count', 1, 'success_count', 1);
        END""",
    )
    handlers("customers", BLOCKING)
    conn.execute("UPDATE qbo_sync.settings SET value = '0.2' WHERE key = 'queue.lease_seconds'")
    try:
        extended = conn.execute("SELECT trigger_qbo_sync(%s, 'items')", (org,)).fetchone()[0]
        held = HeldJob(db_dsn, conn, connect())
        held.start()
        time.sleep(0.3)  # past the original lease: nothing but time can show this
        assert conn.execute("SELECT qbo_sync.reclaim_expired()").fetchone()[0] == 0
        held.finish()
        assert job_row(conn, extended)["status"] == "completed"
        # the same job without the extension loses its lease to reclaim
        plain = conn.execute("SELECT trigger_qbo_sync(%s, 'customers')", (org,)).fetchone()[0]
        held = HeldJob(db_dsn, conn, connect())
        held.start()
        conn.execute(
            "UPDATE qbo_sync_queue SET locked_until = now() - interval '1 second' WHERE id = %s",
            (plain,),
        )  # its lease passed
        assert conn.execute("SELECT qbo_sync.reclaim_expired()").fetchone()[0] == 1
        held.finish()
        assert job_row(conn, plain)["status"] == "pending"
        assert history(conn)[-1][0] == "lease_lost"
    finally:
        conn.execute("UPDATE qbo_sync.settings SET value = '300' WHERE key = 'queue.lease_seconds'")


def test_the_error_code_table_agrees_with_the_in_database_error_classes(conn):
    from qbo_sync_db import errors, lease

    table = {
        code: retryable
        for code, retryable in conn.execute("SELECT sqlstate, retryable FROM qbo_sync.error_code")
    }
    classes = (*errors.ERROR_CLASSES, lease.LeaseLost)
    assert table == {cls.sqlstate: cls.retryable for cls in classes}
    for code, retryable in table.items():
        assert (
            conn.execute("SELECT qbo_sync.error_is_retryable(%s)", (code,)).fetchone()[0]
            is retryable
        )


LOADER = """
if not SD.get("qbo_sync_ready"):
    plpy.execute("SELECT qbo_sync.python_loader()")
    SD["qbo_sync_ready"] = GD["qbo_sync_load"](plpy) is not None
from qbo_sync_db.lease import LeaseKeeper
"""


def test_a_python_job_keeps_its_lease_as_it_goes(conn, org, handlers):
    """The in-database LeaseKeeper, as a long pull uses it: a job running past its lease keeps
    extending it and completes."""
    handlers(
        "items",
        LOADER
        + """
keeper = LeaseKeeper(plpy, job["id"], job["lease_id"], 0.2)
for page in range(5):
    keeper.keep()
    plpy.execute("SELECT pg_sleep(0.05)")
until = plpy.execute("SELECT locked_until > clock_timestamp() AS ok FROM public.qbo_sync_queue"
                     " WHERE id = '%s'" % job["id"])[0]["ok"]
return '{"success_count": 1, "extensions": %d, "lease_ahead": %s}' % (
    keeper.extensions, "true" if until else "false")
""",
        language="plpython3u",
    )
    conn.execute("UPDATE qbo_sync.settings SET value = '0.2' WHERE key = 'queue.lease_seconds'")
    try:
        job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'items')", (org,)).fetchone()[0]
        run_worker(conn, max_jobs=1)
    finally:
        conn.execute("UPDATE qbo_sync.settings SET value = '300' WHERE key = 'queue.lease_seconds'")
    row = job_row(conn, job_id)
    assert row["status"] == "completed", row["last_error"]
    assert row["result"]["extensions"] >= 2 and row["result"]["lease_ahead"] is True


def test_a_python_job_whose_lease_was_taken_back_stops(conn, connect, db_dsn, org, handlers):
    handlers(
        "items",
        LOADER
        + f"""
keeper = LeaseKeeper(plpy, job["id"], job["lease_id"], 0.003)
plpy.execute("SELECT pg_advisory_xact_lock({HOLD_KEY})")  # the test cancels the job meanwhile
keeper.keep()
plpy.execute("INSERT INTO public.handler_calls (direction) VALUES ('after the lease')")
return '{{}}'
""",
        language="plpython3u",
    )
    job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'items')", (org,)).fetchone()[0]
    held = HeldJob(db_dsn, conn, connect())
    held.start()
    assert conn.execute("SELECT qbo_sync_cancel(%s)", (job_id,)).fetchone()[0] is True
    held.finish()
    assert conn.execute("SELECT count(*) FROM handler_calls").fetchone()[0] == 0
    [(status, error)] = history(conn)
    assert status == "lease_lost"
    assert "lease lost: queue job" in error and "QS003" in error and "now cancelled" in error


def test_an_outcome_another_session_holds_back_is_unconfirmed_and_the_work_kept(
    conn, connect, db_dsn, org, handlers
):
    """The finding: an application that cancelled its running job in a transaction it kept open
    made the worker record lease_lost and roll back the handler's work. Now the work is kept, the
    outcome is recorded as unconfirmed after a bounded wait, and the job comes back after its
    lease when the cancel was rolled back."""
    handlers(
        "items",
        f"""BEGIN
            PERFORM pg_advisory_xact_lock({HOLD_KEY});
            INSERT INTO public.handler_calls (direction) VALUES ('done');
            RETURN jsonb_build_object('success_count', 1);
        END""",
    )
    conn.execute("UPDATE qbo_sync.settings SET value = '300' WHERE key = 'worker.lock_timeout_ms'")
    try:
        job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'items')", (org,)).fetchone()[0]
        held = HeldJob(db_dsn, conn, connect())
        held.start()
        app = connect(autocommit=False)
        assert app.execute("SELECT qbo_sync_cancel(%s)", (job_id,)).fetchone()[0] is True
        held.finish()  # the worker waited 0.3 s for the job's row, then went on
        app.rollback()
    finally:
        conn.execute(
            "UPDATE qbo_sync.settings SET value = '5000' WHERE key = 'worker.lock_timeout_ms'"
        )
    assert conn.execute("SELECT count(*) FROM handler_calls").fetchone()[0] == 1
    [(status, error)] = history(conn)
    assert status == "unconfirmed" and "another session held its queue row" in error
    row = job_row(conn, job_id)
    assert row["status"] == "processing"  # the cancel was rolled back; the lease brings it back
    conn.execute("UPDATE qbo_sync_queue SET locked_until = now() - interval '1 second'")
    assert conn.execute("SELECT qbo_sync.reclaim_expired()").fetchone()[0] == 1


def test_a_failed_jobs_history_row_is_found_through_an_index(conn, org):
    """worker_finish writes a failed job's intuit_tid on the job's latest history row: with a
    long history that lookup goes through qbo_sync_history_queue_job_idx, not a read of every
    row the history keeps, once a failure."""
    conn.execute(
        """INSERT INTO qbo_sync_history (organization_id, queue_job_id, sync_type, status,
                                         completed_at)
           SELECT %s, gen_random_uuid(), 'pull', 'completed', now() - make_interval(secs => g)
             FROM generate_series(1, 20000) AS g""",
        (org,),
    )
    conn.execute("ANALYZE qbo_sync_history")
    job_id = conn.execute("SELECT queue_job_id FROM qbo_sync_history LIMIT 1").fetchone()[0]
    plan = "\n".join(
        r[0]
        for r in conn.execute(
            """EXPLAIN SELECT h2.id FROM public.qbo_sync_history AS h2
                WHERE h2.queue_job_id = %s ORDER BY h2.completed_at DESC LIMIT 1""",
            (job_id,),
        )
    )
    assert "qbo_sync_history_queue_job_idx" in plan, plan
    assert "Seq Scan" not in plan, plan
