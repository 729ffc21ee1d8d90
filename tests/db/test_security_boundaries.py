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
    "public.qbo_token_refresh(organization_id uuid) RETURNS void",
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
        conn.execute("UPDATE qbo_connection SET qbo_token_expires_at = now()")  # due for refresh
        conn.execute("SET search_path = public, pg_catalog")
        assert conn.execute("SELECT 'x' || 1").fetchone()[0] == "x1"
        assert ran_as_someone_else(conn) == [("postgres", "operator ||")]  # the trap is live
        conn.execute("TRUNCATE public.attacker_log")

        conn.execute("CALL qbo_sync_worker(5, NULL, true)")
        conn.execute("CALL qbo_sync.worker(1, NULL, true)")
        for _schedule, command in EXPECTED_JOBS.values():
            if "check_token_expiry" in command:
                with pytest.raises(errors.UndefinedFunction, match="qbo_sync.token_refresh"):
                    conn.execute(command)
            elif "worker" not in command:
                conn.execute(command)
        conn.execute("RESET search_path")

        assert ran_as_someone_else(conn) == []
        statuses = dict(conn.execute("SELECT id, status FROM qbo_sync_queue").fetchall())
        assert statuses[customers] == "completed"
        assert statuses[items] == "failed"
        error = conn.execute(
            "SELECT last_error FROM qbo_sync_queue WHERE id = %s", (items,)
        ).fetchone()[0]
        assert "qbo_sync.sync_items(qbo_sync_queue) is not installed" in error
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
    it can (an open trigger_qbo_sync, its organization row FOR UPDATE, and the enqueue and old
    organization advisory keys of both organizations through pg_advisory_lock) while a webhook
    for B waits to be turned into work: A's job runs at once, B's webhook waits for B alone."""
    org_b = make_org(conn, "Busy B")
    make_handler(conn, "customers", "BEGIN RETURN jsonb_build_object('success_count', 1); END")
    try:
        realm_b = conn.execute(
            "SELECT realm_id FROM qbo_connection WHERE organization_id = %s", (org_b,)
        ).fetchone()[0]
        app_b = connect(autocommit=False, user="qbo_sync_app")
        app_b.execute("SELECT set_config('qbo_sync.organization_id', %s, false)", (str(org_b),))
        app_b.execute("SELECT trigger_qbo_sync(%s, 'customers')", (org_b,))
        app_b.execute("SELECT FROM organizations WHERE id = %s FOR UPDATE", (org_b,))
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
        job_a = conn.execute(
            "SELECT trigger_qbo_sync(%s, 'customers', 'pull', 'urgent')", (org,)
        ).fetchone()[0]
        conn.execute("CALL qbo_sync_worker(20, 1, true)")
        elapsed = time.monotonic() - started
        assert (
            conn.execute("SELECT status FROM qbo_sync_queue WHERE id = %s", (job_a,)).fetchone()[0]
            == "completed"
        )
        assert elapsed < 5, f"organization A waited {elapsed:.1f} s behind organization B's locks"
        # B's webhook is neither lost nor marked done: it waits for B's lock to go
        assert (
            conn.execute("SELECT status FROM qbo_webhook_log WHERE id = %s", (log_id,)).fetchone()[
                0
            ]
            == "received"
        )
        assert conn.execute("SELECT count(*) FROM qbo_webhook_processed").fetchone()[0] == 0

        app_b.rollback()
        app_b.execute("SELECT pg_advisory_unlock_all()")
        assert conn.execute("SELECT qbo_sync.process_webhooks()").fetchone()[0] == 1
        assert (
            conn.execute("SELECT status FROM qbo_webhook_log WHERE id = %s", (log_id,)).fetchone()[
                0
            ]
            == "processed"
        )
        assert conn.execute(
            "SELECT entity_ids FROM qbo_sync_queue WHERE organization_id = %s AND source = 'webhook'",
            (org_b,),
        ).fetchall() == [(["9"],)]
    finally:
        conn.execute("DROP FUNCTION IF EXISTS qbo_sync.sync_customers(qbo_sync_queue)")


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
