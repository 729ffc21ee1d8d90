"""Attacks across the privilege boundaries around the worker, as a role with a SQL login would try
them: planting functions and operators for the owner to run, and stalling other organizations'
work with locks."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors

from qbo_sync.install import install
from tests.conftest import make_org
from tests.db.test_cron import EXPECTED_JOBS
from tests.db.test_worker import make_handler

ATTACKER = "qbo_test_attacker"

#: operators an attacker with CREATE on public plants, matching what unpinned code would use
PLANTED_OPERATORS = [
    ("||", "text", "integer", "text", "$1 OPERATOR(pg_catalog.||) $2::text"),
    ("||", "text", "uuid", "text", "$1 OPERATOR(pg_catalog.||) $2::text"),
    ("=", "uuid", "uuid", "boolean", "$1::text OPERATOR(pg_catalog.=) $2::text"),
    (">=", "timestamptz", "timestamptz", "boolean", "$1::text OPERATOR(pg_catalog.>=) $2::text"),
    ("+", "integer", "integer", "integer", "$1 OPERATOR(pg_catalog.-) (-$2)"),
]

#: functions planted under the names an unpinned or unqualified worker would look up
PLANTED_FUNCTIONS = [
    "public.qbo_sync_items(organization_id uuid, direction text, ids text[]) RETURNS jsonb",
    "public.qbo_sync_items(job qbo_sync_queue) RETURNS jsonb",
    "public.sync_items(job qbo_sync_queue) RETURNS jsonb",
    "public.qbo_sync_worker() RETURNS void",
    "public.qbo_token_refresh(organization_id text) RETURNS void",
    "public.token_refresh(organization_id uuid) RETURNS void",
    "public.clock_timestamp() RETURNS timestamptz",
    "public.now() RETURNS timestamptz",
    "public.to_jsonb(value anyelement) RETURNS jsonb",
]


def ran_as_someone_else(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT who, what FROM public.attacker_log").fetchall()


@pytest.fixture
def attacker(conn: psycopg.Connection) -> Iterator[None]:
    """A role with CREATE on public that planted functions and operators there."""
    conn.execute(f"CREATE ROLE {ATTACKER} NOLOGIN")
    conn.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {ATTACKER}")
    conn.execute(f"SET ROLE {ATTACKER}")
    try:
        conn.execute("CREATE TABLE public.attacker_log (who text, what text)")
        conn.execute("GRANT INSERT, SELECT ON public.attacker_log TO PUBLIC")
        for index, (op, left, right, returns, body) in enumerate(PLANTED_OPERATORS):
            conn.execute(
                f"""CREATE FUNCTION public.evil_op_{index}(a {left}, b {right}) RETURNS {returns}
                    LANGUAGE plpgsql AS $$
                    BEGIN
                        INSERT INTO public.attacker_log VALUES (current_user, 'operator {op}');
                        RETURN {body.replace("$1", "a").replace("$2", "b")};
                    END $$"""
            )
            conn.execute(
                f"CREATE OPERATOR public.{op} (LEFTARG = {left}, RIGHTARG = {right},"
                f" FUNCTION = public.evil_op_{index})"
            )
        for signature in PLANTED_FUNCTIONS:
            returns = signature.rsplit("RETURNS ", 1)[1]
            value = {"jsonb": "'{}'::jsonb", "void": "", "timestamptz": "now()"}[returns]
            conn.execute(
                f"""CREATE FUNCTION {signature} LANGUAGE plpgsql AS $$
                    BEGIN
                        INSERT INTO public.attacker_log VALUES (current_user, {signature.split("(")[0]!r});
                        RETURN {value};
                    END $$"""
            )
    finally:
        conn.execute("RESET ROLE")
    yield
    conn.execute(f"DROP OWNED BY {ATTACKER}")
    conn.execute(f"DROP ROLE {ATTACKER}")


def test_nothing_the_worker_runs_resolves_through_a_schema_another_role_can_write(
    conn, org, attacker
):
    """The finding: a planted public.qbo_sync_items and public.||(text, integer) ran as the
    superuser after one trigger_qbo_sync. Now the worker, webhook processing and every pg_cron
    command run as the superuser with public searched *first* (what a database owner can set with
    ALTER DATABASE … SET search_path) and nothing planted runs."""
    make_handler(conn, "customers", "BEGIN RETURN jsonb_build_object('success_count', 1); END")
    try:
        items = conn.execute("SELECT trigger_qbo_sync(%s, 'items')", (org,)).fetchone()[0]
        customers = conn.execute("SELECT trigger_qbo_sync(%s, 'customers')", (org,)).fetchone()[0]
        realm = conn.execute(
            "SELECT realm_id FROM qbo_connection WHERE organization_id = %s", (org,)
        ).fetchone()[0]
        payload = {
            "eventNotifications": [
                {
                    "realmId": realm,
                    "dataChangeEvent": {
                        "entities": [{"name": "Invoice", "id": "7", "operation": "Update"}]
                    },
                }
            ]
        }
        conn.execute(
            "INSERT INTO qbo_webhook_log (body, payload, signature_valid) VALUES (%s, %s, true)",
            (json.dumps(payload), json.dumps(payload)),
        )
        # due for refresh, still usable: the refresh is tried (and fails: no token endpoint
        # answers here), and the job runs with the token it has
        conn.execute(
            "UPDATE qbo_connection SET qbo_token_expires_at = now() + interval '10 minutes'"
        )
        conn.execute("SET search_path = public, pg_catalog")
        assert conn.execute("SELECT 'x' || 1").fetchone()[0] == "x1"
        assert ran_as_someone_else(conn) == [("postgres", "operator ||")]  # the trap is live
        conn.execute("TRUNCATE public.attacker_log")

        conn.execute("CALL qbo_sync_worker(5, NULL, true)")
        conn.execute("CALL qbo_sync.worker(1, NULL, true)")
        for _schedule, command in EXPECTED_JOBS.values():
            if "worker" not in command:
                conn.execute(command)
        conn.execute("RESET search_path")

        assert ran_as_someone_else(conn) == []
        statuses = dict(conn.execute("SELECT id, status FROM qbo_sync_queue").fetchall())
        assert statuses[customers] == "completed"
        assert statuses[items] == "failed"
        error = conn.execute(
            "SELECT last_error FROM qbo_sync_queue WHERE id = %s", (items,)
        ).fetchone()[0]
        # the built-in (Python) handler ran for items, without the planted operators either,
        # and stopped at once: this organization's connection has no tokens
        assert "the connection has no access token (SQLSTATE QS002)" in error
        # the webhook was turned into work by the same worker, without the planted operators
        assert conn.execute("SELECT status FROM qbo_webhook_log").fetchone()[0] == "processed"
    finally:
        conn.execute("RESET search_path")
        conn.execute("DROP FUNCTION IF EXISTS qbo_sync.sync_customers(qbo_sync_queue)")


def test_a_role_cannot_create_in_qbo_sync_or_take_the_organization_lock(conn, connect, org):
    app = connect(user="qbo_sync_app")
    with pytest.raises(errors.InsufficientPrivilege):
        app.execute(
            "CREATE FUNCTION qbo_sync.sync_items(job qbo_sync_queue) RETURNS jsonb"
            " LANGUAGE sql AS 'SELECT NULL::jsonb'"
        )
    with pytest.raises(errors.InsufficientPrivilege):
        app.execute("SELECT FROM qbo_sync.organization_lock FOR UPDATE")


def enqueue_key(org: uuid.UUID, entity: str, direction: str) -> str:
    return f"hashtextextended('qbo_sync.enqueue/{org}/{entity}/{direction}', 0)"


def test_no_organization_and_no_role_stalls_another_organizations_job(conn, connect, org):
    """The finding: organization B's application held the enqueue lock and the worker waited
    75-100 s, with organization A's urgent job behind it. Here B's application holds everything
    it can: an open trigger_qbo_sync, its organization row FOR UPDATE (which a foreign-key check
    of the worker's writes used to wait for), the whole organizations table locked ACCESS EXCLUSIVE, and
    the enqueue and old organization advisory keys of both organizations. A's urgent job runs at
    once, B's webhook is turned into work all the same, and A's own trigger_qbo_sync gives up
    after a bounded wait instead of hanging."""
    org_b = make_org(conn, "Busy B")
    make_handler(conn, "customers", "BEGIN RETURN jsonb_build_object('success_count', 1); END")
    try:
        realm_b = conn.execute(
            "SELECT realm_id FROM qbo_connection WHERE organization_id = %s", (org_b,)
        ).fetchone()[0]
        job_a = conn.execute(
            "SELECT trigger_qbo_sync(%s, 'customers', 'pull', 'urgent')", (org,)
        ).fetchone()[0]
        app_b = connect(autocommit=False, user="qbo_sync_app")
        app_b.execute("SELECT set_config('qbo_sync.organization_id', %s, false)", (str(org_b),))
        app_b.execute("SELECT trigger_qbo_sync(%s, 'customers')", (org_b,))
        app_b.execute("SELECT FROM organizations WHERE id = %s FOR UPDATE", (org_b,))
        app_b.execute("LOCK TABLE organizations IN ACCESS EXCLUSIVE MODE")
        for target in (org, org_b):
            for direction in ("pull", "both"):
                app_b.execute(
                    f"SELECT pg_advisory_lock({enqueue_key(target, 'customers', direction)})"
                )
            app_b.execute(
                f"SELECT pg_advisory_lock(hashtextextended('qbo_sync.organization/{target}', 0))"
            )
        payload = {
            "eventNotifications": [
                {
                    "realmId": realm_b,
                    "dataChangeEvent": {
                        "entities": [{"name": "Customer", "id": "9", "operation": "Update"}]
                    },
                }
            ]
        }
        log_id = conn.execute(
            "INSERT INTO qbo_webhook_log (body, payload, signature_valid) VALUES (%s, %s, true)"
            " RETURNING id",
            (json.dumps(payload), json.dumps(payload)),
        ).fetchone()[0]

        started = time.monotonic()
        conn.execute("CALL qbo_sync_worker(20, 1, true)")
        elapsed = time.monotonic() - started
        assert elapsed < 5, f"organization A waited {elapsed:.1f} s behind organization B's locks"
        status = conn.execute("SELECT status FROM qbo_sync_queue WHERE id = %s", (job_a,))
        assert status.fetchone()[0] == "completed"
        webhook = conn.execute("SELECT status FROM qbo_webhook_log WHERE id = %s", (log_id,))
        assert webhook.fetchone()[0] == "processed"
        assert conn.execute(
            "SELECT entity_ids FROM qbo_sync_queue WHERE organization_id = %s AND source = 'webhook'",
            (org_b,),
        ).fetchall() == [(["9"],)]
        # what reads organizations waits a bounded time and says so
        started = time.monotonic()
        with pytest.raises(errors.LockNotAvailable):
            conn.execute("SELECT trigger_qbo_sync(%s, 'customers', 'both')", (org,))
        assert time.monotonic() - started < 5
        app_b.rollback()
        app_b.execute("SELECT pg_advisory_unlock_all()")
    finally:
        conn.execute("DROP FUNCTION IF EXISTS qbo_sync.sync_customers(qbo_sync_queue)")


def legacy_webhook(conn, realm: str, entity_id: str, **event: str) -> int:
    entity = {"name": "Customer", "id": entity_id, "operation": "Update", **event}
    payload = {
        "eventNotifications": [{"realmId": realm, "dataChangeEvent": {"entities": [entity]}}]
    }
    return conn.execute(
        "INSERT INTO qbo_webhook_log (body, payload, signature_valid) VALUES (%s, %s, true)"
        " RETURNING id",
        (json.dumps(payload), json.dumps(payload)),
    ).fetchone()[0]


def realm_of(conn, org) -> str:
    return conn.execute(
        "SELECT realm_id FROM qbo_connection WHERE organization_id = %s", (org,)
    ).fetchone()[0]


def webhook_status(conn, log_id: int) -> str:
    return conn.execute("SELECT status FROM qbo_webhook_log WHERE id = %s", (log_id,)).fetchone()[0]


def test_a_busy_organizations_webhooks_wait_without_holding_up_the_others(conn, connect, org):
    """B's webhooks cannot be turned into work (another session holds an event key of B's), so
    they wait: marked to be tried again later, they no longer come first in every pass, and A's
    webhook behind them is processed."""
    org_b = make_org(conn, "Busy B")
    realm_b = realm_of(conn, org_b)
    b_rows = [legacy_webhook(conn, realm_b, "1") for _ in range(3)]  # Intuit redelivering
    a_row = legacy_webhook(conn, realm_of(conn, org), "2")
    event_key = conn.execute(
        "SELECT event_key FROM qbo_sync.webhook_events((SELECT payload FROM qbo_webhook_log WHERE id = %s))",
        (b_rows[0],),
    ).fetchone()[0]
    holder = connect(autocommit=False)  # another worker, mid-way through B's event
    holder.execute(
        "INSERT INTO qbo_webhook_processed (organization_id, event_key, realm_id, entity, entity_id,"
        " operation) VALUES (%s, %s, %s, 'customers', '1', 'Update')",
        (org_b, event_key, realm_b),
    )
    assert conn.execute("SELECT qbo_sync.process_webhooks(2)").fetchone()[0] == 0  # B's first two
    assert conn.execute("SELECT qbo_sync.process_webhooks(2)").fetchone()[0] == 1  # B's third, A's
    assert webhook_status(conn, a_row) == "processed"
    assert [webhook_status(conn, r) for r in b_rows] == ["received"] * 3
    holder.rollback()
    conn.execute("UPDATE qbo_webhook_log SET next_attempt_at = now()")  # their wait is over
    assert conn.execute("SELECT qbo_sync.process_webhooks()").fetchone()[0] == 3
    assert [webhook_status(conn, r) for r in b_rows] == ["processed"] * 3
    assert conn.execute(
        "SELECT entity_ids FROM qbo_sync_queue WHERE organization_id = %s", (org_b,)
    ).fetchall() == [(["1"],)]


def test_no_signed_webhook_stops_the_worker(conn, connect, org):
    """The finding: a signed legacy event without "operation" (a NOT NULL column) or a CloudEvent
    with a 12 kB id (too long for its index) made every worker call fail before claiming. Both
    are processed now, and a row that still cannot be processed is marked as an error alone."""
    realm = realm_of(conn, org)
    listener = connect(user="qbo_sync_listener")
    no_operation = {
        "eventNotifications": [
            {"realmId": realm, "dataChangeEvent": {"entities": [{"name": "Customer", "id": "1"}]}}
        ]
    }
    long_id = [
        {
            "specversion": "1.0",
            "id": "x" * 12000,
            "type": "qbo.customer.updated.v1",
            "intuitaccountid": realm,
            "intuitentityid": "2",
            "time": "2026-01-01T00:00:00Z",
        }
    ]
    for payload in (no_operation, long_id):
        listener.execute(
            "INSERT INTO qbo_webhook_log (body, payload, signature_valid) VALUES (%s, %s, true)",
            (json.dumps(payload), json.dumps(payload)),
        )
    # a row no code expected: a constraint the test adds refuses its event
    conn.execute(
        "ALTER TABLE qbo_webhook_processed ADD CONSTRAINT test_poison CHECK (entity_id <> '666') NOT VALID"
    )
    try:
        poison = legacy_webhook(conn, realm, "666")
        good = legacy_webhook(conn, realm, "3")
        job = conn.execute(
            "SELECT trigger_qbo_sync(%s, 'items', 'pull', 'urgent')", (org,)
        ).fetchone()[0]
        conn.execute("CALL qbo_sync_worker(5, 1, true)")
        assert (
            conn.execute("SELECT status FROM qbo_sync_queue WHERE id = %s", (job,)).fetchone()[0]
            == "failed"
        )  # ran (no handler)
        statuses = dict(conn.execute("SELECT id, status FROM qbo_webhook_log").fetchall())
        assert statuses[good] == "processed" and statuses[poison] == "error"
        assert (
            sorted(statuses.values()).count("processed") == 3
        )  # the two odd ones and the good one
        error = conn.execute(
            "SELECT error FROM qbo_webhook_log WHERE id = %s", (poison,)
        ).fetchone()[0]
        assert "could not be processed" in error and "test_poison" in error
        ids = conn.execute(
            "SELECT entity_ids FROM qbo_sync_queue WHERE source = 'webhook'"
        ).fetchone()[0]
        assert ids == ["1", "2", "3"]
    finally:
        conn.execute("ALTER TABLE qbo_webhook_processed DROP CONSTRAINT test_poison")


def test_a_role_cannot_hold_the_queue_or_its_jobs(conn, connect, org):
    """The finding: the application could set a job processing with an infinite lease, after
    which nothing could touch it. Direct writes are gone; every state has a way back."""
    job_id = conn.execute("SELECT trigger_qbo_sync(%s, 'items')", (org,)).fetchone()[0]
    app = connect(user="qbo_sync_app")
    app.execute("SELECT set_config('qbo_sync.organization_id', %s, false)", (str(org),))
    for statement in (
        "UPDATE qbo_sync_queue SET status = 'processing', locked_until = 'infinity'",
        "DELETE FROM qbo_sync_queue",
        "INSERT INTO qbo_sync_queue (organization_id, sync_endpoint) SELECT organization_id, 'items' FROM qbo_sync_queue",
        "SELECT FROM qbo_sync_queue FOR UPDATE",
        "TRUNCATE qbo_sync_queue",
    ):
        with pytest.raises(errors.InsufficientPrivilege):
            app.execute(statement)
    # what the application may do, it does through the functions, for its own organization
    assert app.execute("SELECT qbo_sync_cancel(%s)", (job_id,)).fetchone()[0] is True
    assert app.execute("SELECT qbo_sync_requeue(%s)", (job_id,)).fetchone()[0] == job_id
    assert conn.execute("SELECT status FROM qbo_sync_queue").fetchone()[0] == "pending"


@pytest.fixture
def owned_database(pg_server) -> Iterator[tuple[str, str]]:
    """A database owned by a role that is not a superuser (so, on PostgreSQL 15, it owns schema
    public), with qbo-sync installed by the superuser. Yields (dsn, owner)."""
    name = "owned_" + uuid.uuid4().hex[:8]
    owner = "dbowner_" + uuid.uuid4().hex[:8]
    with psycopg.connect(pg_server.dsn(), autocommit=True) as su:
        su.execute(f"CREATE ROLE {owner} LOGIN")
    dsn = pg_server.create_database(name)
    with psycopg.connect(pg_server.dsn(), autocommit=True) as su:
        su.execute(f"ALTER DATABASE {name} OWNER TO {owner}")
    install(dsn)
    yield dsn, owner
    pg_server.drop_database(name)
    with psycopg.connect(pg_server.dsn(), autocommit=True) as su:
        su.execute(f"DROP ROLE {owner}")


ESCALATE = """
CREATE FUNCTION public.escalate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('ALTER ROLE %I SUPERUSER', '{owner}');
    END IF;
    RETURN NEW;
END $$;
"""


@pytest.mark.parametrize("table", ["qbo_webhook_log", "qbo_sync_queue", "qbo_sync_history"])
def test_tables_replaced_in_public_are_refused_not_used(owned_database, table):
    """The finding: the database owner (not a superuser) owns schema public, dropped
    qbo_webhook_log and put a table with a trigger of its own in its place; the worker, running
    as the superuser, fired the trigger, which made the owner a superuser. The worker and the
    cron jobs now check that the tables they work on are still qbo-sync's, and refuse."""
    dsn, owner = owned_database
    with psycopg.connect(dsn, autocommit=True) as su:
        org = make_org(su, "Victim")
        su.execute("SELECT trigger_qbo_sync(%s, 'items')", (org,))
    with psycopg.connect(dsn, autocommit=True, user=owner) as attacker:
        attacker.execute(f"DROP TABLE public.{table} CASCADE")
        attacker.execute(
            f"CREATE TABLE public.{table} (id uuid, organization_id uuid, status text)"
        )
        attacker.execute(ESCALATE.format(owner=owner))
        attacker.execute(
            f"CREATE TRIGGER escalate BEFORE INSERT OR UPDATE OR DELETE ON public.{table}"
            " FOR EACH ROW EXECUTE FUNCTION public.escalate()"
        )
    with psycopg.connect(dsn, autocommit=True) as su:
        warnings: list[str] = []
        su.add_notice_handler(lambda diag: warnings.append(diag.message_primary or ""))
        su.execute("CALL qbo_sync.worker(3, NULL, true)")
        assert any(
            f"public.{table} is owned by {owner}" in w and "will not run" in w for w in warnings
        ), warnings
        for command in (
            "SELECT qbo_sync.push_local_changes()",
            "SELECT qbo_sync.cleanup_sync_jobs()",
            "SELECT qbo_sync.process_webhooks()",
        ):
            with pytest.raises(psycopg.Error, match="will not run as its owner") as failure:
                su.execute(command)
            assert failure.value.sqlstate == "QS004"
        assert not su.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (owner,)
        ).fetchone()[0]
