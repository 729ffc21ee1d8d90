"""Roles, privileges and row-level security, exercised against the real database.

Fixtures are written by the owner through `conn`; each role's session is a `connect(user=...)`
connection (SET ROLE). Refusals are checked by SQLSTATE: 42501 insufficient_privilege (a missing
grant or a row-level security WITH CHECK) and P0002 no_data_found (an organization the
application's session cannot see).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import errors, sql

from tests.conftest import make_org

pytestmark = pytest.mark.db

LISTENER = "qbo_sync_listener"
MONITOR = "qbo_sync_monitor"
APP = "qbo_sync_app"

NON_TOKEN_CONNECTION_COLUMNS = (
    "organization_id, realm_id, environment, api_base_url, company_name, qbo_token_expires_at, "
    "qbo_refresh_token_expires_at, qbo_refresh_token_hard_expires_at, is_active, inactive_reason, "
    "connected_at, last_refreshed_at, last_refresh_error, refresh_failure_count, created_at, "
    "updated_at"
)


@pytest.fixture
def two_orgs(conn: psycopg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
    """Organizations A and B, each with a connection holding encrypted tokens, a customer, a
    queue job and a history row."""
    org_a = make_org(conn, "Org A")
    org_b = make_org(conn, "Org B")
    for org, name in ((org_a, "Customer A"), (org_b, "Customer B")):
        conn.execute(
            """UPDATE qbo_connection
                  SET qbo_access_token_encrypted = qbo_sync.encrypt_token('access-' || %(org)s),
                      qbo_refresh_token_encrypted = qbo_sync.encrypt_token('refresh-' || %(org)s)
                WHERE organization_id = %(org)s""",
            {"org": org},
        )
        conn.execute(
            "INSERT INTO customer_profile (organization_id, display_name, qbo_id)"
            " VALUES (%s, %s, %s)",
            (org, name, "qbo-" + name[-1]),
        )
        conn.execute("SELECT qbo_sync.enqueue(%s, 'customers', 'pull')", (org,))
        conn.execute(
            """INSERT INTO qbo_sync_history (organization_id, sync_type, status, completed_at)
               VALUES (%s, 'manual', 'completed', now())""",
            (org,),
        )
    return org_a, org_b


def app_session(
    connect: Callable[..., psycopg.Connection], org: uuid.UUID | None
) -> psycopg.Connection:
    """A session of the application role working for `org` (None: no organization set)."""
    session = connect(user=APP)
    if org is not None:
        session.execute("SELECT set_config('qbo_sync.organization_id', %s, false)", (str(org),))
    return session


def scalar(connection: psycopg.Connection, query: str, params: tuple | dict | None = None):
    row = connection.execute(query, params).fetchone()
    assert row is not None
    return row[0]


# ------------------------------------------------------------------------------------ listener


@pytest.mark.parametrize("status", ["received", "rejected"])
def test_listener_inserts_webhook(conn, connect, status):
    listener = connect(user=LISTENER)
    marker = f"listener-{status}-{uuid.uuid4()}"
    listener.execute(
        """INSERT INTO qbo_webhook_log (body, payload, signature, signature_valid, content_type,
                                        remote_addr, payload_format, status, error)
           VALUES (%s, '{"eventNotifications": []}', 'sig', %s, 'application/json', '127.0.0.1',
                   'legacy', %s, NULL)""",
        (marker, status == "received", status),
    )
    row = conn.execute(
        "SELECT status, signature_valid, received_at IS NOT NULL"
        " FROM qbo_webhook_log WHERE body = %s",
        (marker,),
    ).fetchone()
    assert row == (status, status == "received", True)


def test_listener_default_status_is_received_for_signed_webhooks_only(conn, connect):
    listener = connect(user=LISTENER)
    listener.execute(
        "INSERT INTO qbo_webhook_log (body, signature_valid) VALUES ('default-status', true)"
    )
    assert (
        scalar(conn, "SELECT status FROM qbo_webhook_log WHERE body = 'default-status'")
        == "received"
    )
    # an unsigned webhook can only be stored as rejected: never as work to process
    for status in ("DEFAULT", "'received'"):
        with pytest.raises(errors.CheckViolation, match="unsigned_is_rejected"):
            listener.execute(
                f"INSERT INTO qbo_webhook_log (body, signature_valid, status) VALUES ('unsigned', false, {status})"
            )
    assert scalar(conn, "SELECT count(*) FROM qbo_webhook_log WHERE body = 'unsigned'") == 0


def test_listener_cannot_read_back_webhooks(conn, connect):
    conn.execute("INSERT INTO qbo_webhook_log (body, signature_valid) VALUES ('x', true)")
    listener = connect(user=LISTENER)
    with pytest.raises(errors.InsufficientPrivilege):
        listener.execute("SELECT body FROM qbo_webhook_log")
    with pytest.raises(errors.InsufficientPrivilege):
        listener.execute(
            "INSERT INTO qbo_webhook_log (body, signature_valid) VALUES ('y', true) RETURNING id"
        )
    assert scalar(conn, "SELECT count(*) FROM qbo_webhook_log WHERE body = 'y'") == 0


@pytest.mark.parametrize(
    "table",
    [
        "qbo_connection",
        "qbo_sync_queue",
        "organizations",
        "qbo_sync_history",
        "qbo_sync_status",
        "qbo_webhook_processed",
        "qbo_oauth_state",
        "customer_profile",
        "qbo_sync.settings",
    ],
)
def test_listener_cannot_read(two_orgs, connect, table):
    listener = connect(user=LISTENER)
    with pytest.raises(errors.InsufficientPrivilege):
        listener.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table.split(".")))
        )


@pytest.mark.parametrize("status", ["processed", "error"])
def test_listener_cannot_insert_finished_webhook(conn, connect, status):
    listener = connect(user=LISTENER)
    with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
        listener.execute(
            "INSERT INTO qbo_webhook_log (body, signature_valid, status)"
            " VALUES ('forged', true, %s)",
            (status,),
        )
    assert scalar(conn, "SELECT count(*) FROM qbo_webhook_log WHERE body = 'forged'") == 0


@pytest.mark.parametrize("column", ["id", "received_at", "processed_at", "event_count"])
def test_listener_cannot_set_bookkeeping_columns(connect, column):
    listener = connect(user=LISTENER)
    value = {"id": "1", "received_at": "now()", "processed_at": "now()", "event_count": "3"}[column]
    query = sql.SQL(
        "INSERT INTO qbo_webhook_log (body, signature_valid, {}) OVERRIDING SYSTEM VALUE "
        "VALUES ('b', true, {})"
    ).format(sql.Identifier(column), sql.SQL(value))
    with pytest.raises(errors.InsufficientPrivilege):
        listener.execute(query)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE qbo_webhook_log SET status = 'processed'",
        "UPDATE qbo_webhook_log SET status = 'processed' WHERE id = {id}",
        "DELETE FROM qbo_webhook_log",
        "DELETE FROM qbo_webhook_log WHERE id = {id}",
        "TRUNCATE qbo_webhook_log",
    ],
)
def test_listener_cannot_update_or_delete(conn, connect, statement):
    log_id = scalar(
        conn,
        "INSERT INTO qbo_webhook_log (body, signature_valid) VALUES ('keep', true) RETURNING id",
    )
    listener = connect(user=LISTENER)
    with pytest.raises(errors.InsufficientPrivilege):
        listener.execute(statement.format(id=log_id))
    assert conn.execute(
        "SELECT status FROM qbo_webhook_log WHERE id = %s", (log_id,)
    ).fetchone() == ("received",)


@pytest.mark.parametrize(
    "call",
    [
        "SELECT qbo_sync.secret('QBO_SYNC_TOKEN_KEY')",
        "SELECT public.trigger_qbo_sync('{org}', 'items')",
        "SELECT qbo_sync.enqueue('{org}', 'items')",
        "SELECT qbo_sync.process_webhooks(10)",
        "CALL public.qbo_sync_worker(0, 0, true)",
    ],
)
def test_listener_cannot_execute(two_orgs, conn, connect, call):
    listener = connect(user=LISTENER)
    jobs_before = scalar(conn, "SELECT count(*) FROM qbo_sync_queue")
    with pytest.raises(errors.InsufficientPrivilege):
        listener.execute(call.format(org=two_orgs[0]))
    assert scalar(conn, "SELECT count(*) FROM qbo_sync_queue") == jobs_before


# ------------------------------------------------------------------------------------ monitor


def test_monitor_reads_status_queue_and_history_of_every_organization(two_orgs, connect):
    monitor = connect(user=MONITOR)
    both = set(two_orgs)
    rows = monitor.execute(
        "SELECT organization_id, organization_name, token_status, pending_jobs, last_sync_status"
        " FROM qbo_sync_status"
    ).fetchall()
    assert {r[0] for r in rows} == both
    assert all(r[2] == "valid" and r[3] == 1 and r[4] == "completed" for r in rows)
    assert {r[0] for r in monitor.execute("SELECT organization_id FROM qbo_sync_queue")} == both
    assert {r[0] for r in monitor.execute("SELECT organization_id FROM qbo_sync_history")} == both
    assert {r[0] for r in monitor.execute("SELECT id FROM organizations")} == both


def test_monitor_reads_non_token_connection_columns(two_orgs, connect):
    monitor = connect(user=MONITOR)
    rows = monitor.execute(f"SELECT {NON_TOKEN_CONNECTION_COLUMNS} FROM qbo_connection").fetchall()
    assert {r[0] for r in rows} == set(two_orgs)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT qbo_access_token_encrypted FROM qbo_connection",
        "SELECT qbo_refresh_token_encrypted FROM qbo_connection",
        "SELECT * FROM qbo_connection",
        "SELECT count(*) FROM qbo_connection WHERE qbo_access_token_encrypted IS NOT NULL",
        "SELECT c FROM qbo_connection AS c",
        "SELECT qbo_sync.decrypt_token(qbo_access_token_encrypted) FROM qbo_connection",
        "SELECT qbo_sync.secret('QBO_SYNC_TOKEN_KEY')",
    ],
)
def test_monitor_cannot_read_tokens(two_orgs, connect, query):
    monitor = connect(user=MONITOR)
    with pytest.raises(errors.InsufficientPrivilege):
        monitor.execute(query)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO qbo_sync_queue (organization_id, sync_endpoint) VALUES ('{a}', 'items')",
        "UPDATE qbo_sync_queue SET status = 'cancelled'",
        "DELETE FROM qbo_sync_history",
        "UPDATE organizations SET name = 'renamed'",
        "DELETE FROM organizations",
        "UPDATE qbo_connection SET is_active = false, inactive_reason = 'x'",
        "INSERT INTO qbo_webhook_log (body, signature_valid) VALUES ('m', true)",
        "UPDATE qbo_sync.settings SET value = '1'",
        "INSERT INTO customer_profile (organization_id, display_name) VALUES ('{a}', 'm')",
        "SELECT public.trigger_qbo_sync('{a}', 'items')",
        "SELECT qbo_sync.enqueue('{a}', 'items')",
        "SELECT public.qbo_sync_cancel('{a}')",
        "SELECT qbo_sync.cleanup_sync_history()",
    ],
)
def test_monitor_cannot_write(two_orgs, conn, connect, statement):
    before = conn.execute(
        "SELECT (SELECT count(*) FROM qbo_sync_queue), (SELECT count(*) FROM qbo_sync_history), "
        "(SELECT string_agg(name, ',' ORDER BY name) FROM organizations), "
        "(SELECT value FROM qbo_sync.settings WHERE key = 'queue.lease_seconds')"
    ).fetchone()
    monitor = connect(user=MONITOR)
    with pytest.raises(errors.InsufficientPrivilege):
        monitor.execute(statement.format(a=two_orgs[0]))
    after = conn.execute(
        "SELECT (SELECT count(*) FROM qbo_sync_queue), (SELECT count(*) FROM qbo_sync_history), "
        "(SELECT string_agg(name, ',' ORDER BY name) FROM organizations), "
        "(SELECT value FROM qbo_sync.settings WHERE key = 'queue.lease_seconds')"
    ).fetchone()
    assert after == before


# ------------------------------------------------------------------------------------ application


@pytest.mark.parametrize(
    ("query", "column"),
    [
        ("SELECT id FROM organizations", "id"),
        ("SELECT organization_id FROM customer_profile", "organization_id"),
        ("SELECT organization_id FROM qbo_sync_queue", "organization_id"),
        ("SELECT organization_id FROM qbo_sync_status", "organization_id"),
        ("SELECT organization_id FROM qbo_sync_history", "organization_id"),
        (f"SELECT {NON_TOKEN_CONNECTION_COLUMNS} FROM qbo_connection", "organization_id"),
    ],
)
def test_app_sees_only_its_organization(two_orgs, connect, query, column):
    org_a, org_b = two_orgs
    for org in (org_a, org_b):
        rows = app_session(connect, org).execute(query).fetchall()
        assert rows, f"{query} returned nothing for the session's own organization"
        assert {r[0] for r in rows} == {org}, column


def test_app_status_counts_only_its_organization(two_orgs, connect):
    org_a, _ = two_orgs
    rows = (
        app_session(connect, org_a)
        .execute("SELECT organization_id, pending_jobs, last_sync_status FROM qbo_sync_status")
        .fetchall()
    )
    assert rows == [(org_a, 1, "completed")]


def test_app_without_organization_sees_nothing(two_orgs, connect):
    app = app_session(connect, None)
    for table in (
        "organizations",
        "customer_profile",
        "qbo_sync_queue",
        "qbo_sync_history",
        "qbo_sync_status",
    ):
        assert scalar(app, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))) == 0, (
            table
        )
    with pytest.raises(errors.InsufficientPrivilege):
        app.execute(
            "INSERT INTO customer_profile (organization_id, display_name) VALUES (%s, 'x')",
            (two_orgs[0],),
        )


def test_app_inserts_for_its_organization_only(two_orgs, conn, connect):
    org_a, org_b = two_orgs
    app = app_session(connect, org_a)
    app.execute(
        "INSERT INTO customer_profile (organization_id, display_name) VALUES (%s, 'New A')",
        (org_a,),
    )
    with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
        app.execute(
            "INSERT INTO customer_profile (organization_id, display_name) VALUES (%s, 'Intruder')",
            (org_b,),
        )
    with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
        app.execute(
            "INSERT INTO qbo_sync_queue (organization_id, sync_endpoint) VALUES (%s, 'items')",
            (org_b,),
        )
    assert scalar(conn, "SELECT count(*) FROM customer_profile WHERE display_name = 'New A'") == 1
    assert (
        scalar(conn, "SELECT count(*) FROM customer_profile WHERE display_name = 'Intruder'") == 0
    )


def test_app_cannot_move_a_row_to_another_organization(two_orgs, conn, connect):
    org_a, org_b = two_orgs
    app = app_session(connect, org_a)
    with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
        app.execute("UPDATE customer_profile SET organization_id = %s", (org_b,))
    assert (
        scalar(conn, "SELECT count(*) FROM customer_profile WHERE organization_id = %s", (org_a,))
        == 1
    )


def test_app_cannot_change_other_organizations_rows(two_orgs, conn, connect):
    org_a, org_b = two_orgs
    app = app_session(connect, org_a)
    assert (
        app.execute(
            "UPDATE customer_profile SET display_name = 'hacked' WHERE organization_id = %s",
            (org_b,),
        ).rowcount
        == 0
    )
    assert app.execute("DELETE FROM organizations WHERE id = %s", (org_b,)).rowcount == 0
    with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
        app.execute(
            "UPDATE qbo_sync_queue SET status = 'cancelled' WHERE organization_id = %s", (org_b,)
        )
    assert (
        scalar(
            conn, "SELECT display_name FROM customer_profile WHERE organization_id = %s", (org_b,)
        )
        == "Customer B"
    )
    assert scalar(conn, "SELECT count(*) FROM organizations WHERE id = %s", (org_b,)) == 1
    assert (
        scalar(conn, "SELECT status FROM qbo_sync_queue WHERE organization_id = %s", (org_b,))
        == "pending"
    )


def test_app_triggers_sync_for_its_organization(two_orgs, conn, connect):
    org_a, _ = two_orgs
    job_id = scalar(app_session(connect, org_a), "SELECT trigger_qbo_sync(%s, 'items')", (org_a,))
    row = conn.execute(
        "SELECT organization_id, sync_endpoint, priority::text FROM qbo_sync_queue WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row == (org_a, "items", "urgent")


def test_app_cannot_trigger_sync_for_another_organization(two_orgs, conn, connect):
    org_a, org_b = two_orgs
    app = app_session(connect, org_a)
    with pytest.raises(errors.NoDataFound, match="does not exist"):
        app.execute("SELECT trigger_qbo_sync(%s, 'items')", (org_b,))
    with pytest.raises(errors.NoDataFound, match="does not exist"):
        app.execute("SELECT qbo_sync_orchestrator(%s)", (org_b,))
    with pytest.raises(
        errors.InsufficientPrivilege, match="permission denied for function enqueue"
    ):
        app.execute("SELECT qbo_sync.enqueue(%s, 'invoices')", (org_b,))
    # the setting names the organization a session works for; without it, none
    app.execute("RESET qbo_sync.organization_id")
    with pytest.raises(errors.NoDataFound, match="does not exist"):
        app.execute("SELECT trigger_qbo_sync(%s, 'items')", (org_a,))
    assert (
        scalar(conn, "SELECT count(*) FROM qbo_sync_queue WHERE organization_id = %s", (org_b,))
        == 1
    )


def test_app_cannot_requeue_or_cancel_another_organizations_job(two_orgs, conn, connect):
    org_a, org_b = two_orgs
    job_b = scalar(conn, "SELECT id FROM qbo_sync_queue WHERE organization_id = %s", (org_b,))
    app = app_session(connect, org_a)
    assert scalar(app, "SELECT qbo_sync_cancel(%s)", (job_b,)) is False
    with pytest.raises(errors.NoDataFound):
        app.execute("SELECT qbo_sync_requeue(%s)", (job_b,))
    assert scalar(conn, "SELECT status FROM qbo_sync_queue WHERE id = %s", (job_b,)) == "pending"


@pytest.mark.parametrize(
    "query",
    [
        "SELECT qbo_access_token_encrypted FROM qbo_connection",
        "SELECT qbo_refresh_token_encrypted FROM qbo_connection",
        "SELECT * FROM qbo_connection",
        "SELECT qbo_sync.decrypt_token(qbo_access_token_encrypted) FROM qbo_connection",
        "SELECT qbo_sync.secret('QBO_SYNC_TOKEN_KEY')",
        "UPDATE qbo_connection SET is_active = false, inactive_reason = 'x'",
        "SELECT count(*) FROM qbo_webhook_log",
        "SELECT count(*) FROM qbo_oauth_state",
    ],
)
def test_app_cannot_read_tokens_or_secrets(two_orgs, connect, query):
    app = app_session(connect, two_orgs[0])
    with pytest.raises(errors.InsufficientPrivilege):
        app.execute(query)


def test_app_change_tracking_runs_with_its_rights(two_orgs, conn, connect):
    """The tracking triggers run as the application: a line change bumps its invoice, and
    deleting a row that never reached QBO records nothing."""
    org_a, _ = two_orgs
    app = app_session(connect, org_a)
    invoice = scalar(
        app, "INSERT INTO invoice_record (organization_id) VALUES (%s) RETURNING id", (org_a,)
    )
    version = scalar(app, "SELECT qbo_local_version FROM invoice_record WHERE id = %s", (invoice,))
    line = scalar(
        app,
        "INSERT INTO invoice_line_item (organization_id, invoice_id, amount) VALUES (%s, %s, 5) "
        "RETURNING id",
        (org_a, invoice),
    )
    app.execute("UPDATE invoice_line_item SET amount = 7 WHERE id = %s", (line,))
    assert (
        scalar(app, "SELECT qbo_local_version FROM invoice_record WHERE id = %s", (invoice,))
        == version + 2
    )
    app.execute(
        "INSERT INTO customer_profile (organization_id, display_name) VALUES (%s, 'Local only')",
        (org_a,),
    )
    assert (
        app.execute("DELETE FROM customer_profile WHERE display_name = 'Local only'").rowcount == 1
    )
    assert scalar(conn, "SELECT count(*) FROM qbo_sync.local_deletion") == 0


def test_app_can_delete_its_synced_customer(two_orgs, conn, connect):
    """Deleting a row that reached QBO records it in qbo_sync.local_deletion (the push removes it
    from QBO). The trigger runs with the application's rights and does INSERT ... ON CONFLICT DO
    UPDATE, which needs SELECT and UPDATE on qbo_sync.local_deletion: the application has only
    INSERT, so the delete fails (found defect, see the commit message)."""
    org_a, _ = two_orgs
    app = app_session(connect, org_a)
    assert app.execute("DELETE FROM customer_profile WHERE qbo_id = 'qbo-A'").rowcount == 1
    assert conn.execute(
        "SELECT organization_id, entity, qbo_id FROM qbo_sync.local_deletion"
    ).fetchall() == [(org_a, "customers", "qbo-A")]


def test_app_cannot_record_deletions_for_another_organization(two_orgs, conn, connect):
    """qbo_sync.local_deletion has no row-level security, and the application may INSERT into it:
    a session of org A could make the next push delete org B's customer in QuickBooks (found
    defect, see the commit message)."""
    org_a, org_b = two_orgs
    app = app_session(connect, org_a)
    try:
        with pytest.raises(errors.InsufficientPrivilege):
            app.execute(
                "INSERT INTO qbo_sync.local_deletion (organization_id, entity, qbo_id)"
                " VALUES (%s, 'customers', 'qbo-B')",
                (org_b,),
            )
    finally:
        leaked = scalar(
            conn,
            "SELECT count(*) FROM qbo_sync.local_deletion WHERE organization_id = %s",
            (org_b,),
        )
    assert leaked == 0


# ------------------------------------------------------------------------------------ PUBLIC


@pytest.fixture
def fresh_login(pg_server, db_dsn) -> Iterator[psycopg.Connection]:
    """A session of a role created for the test (LOGIN, no grants: only PUBLIC's rights)."""
    role = "qbo_test_public_" + uuid.uuid4().hex[:12]
    with psycopg.connect(db_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    session = None
    try:
        session = psycopg.connect(pg_server.dsn("qbo_test", user=role), autocommit=True)
        assert scalar(session, "SELECT current_user") == role
        yield session
    finally:
        if session is not None:
            session.close()
        with psycopg.connect(db_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.mark.parametrize(
    "query",
    [
        "SELECT qbo_sync.secret('QBO_SYNC_TOKEN_KEY')",
        "SELECT * FROM qbo_sync.settings",
        "SELECT qbo_sync.encrypt_token('x')",
        "SELECT qbo_sync.decrypt_token('\\x00'::bytea)",
        "SELECT qbo_sync.python_setup()",
        "SELECT qbo_sync.version()",
        "SELECT public.trigger_qbo_sync(gen_random_uuid(), 'items')",
        "SELECT qbo_sync.process_webhooks(1)",
        "CALL public.qbo_sync_worker(0, 0, true)",
        "SELECT count(*) FROM public.qbo_connection",
        "SELECT count(*) FROM public.qbo_sync_queue",
        "SELECT count(*) FROM public.qbo_sync_status",
        "SELECT count(*) FROM public.organizations",
        "SELECT count(*) FROM public.customer_profile",
        "INSERT INTO public.qbo_webhook_log (body, signature_valid) VALUES ('p', true)",
    ],
)
def test_public_has_nothing(two_orgs, fresh_login, query):
    with pytest.raises(errors.InsufficientPrivilege):
        fresh_login.execute(query)


def test_fresh_login_role_is_dropped_after_use(pg_server, db_dsn, conn):
    """The fixture above leaves no role behind (roles are cluster-wide)."""
    assert (
        scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'qbo\\_test\\_public\\_%'")
        == 0
    )
