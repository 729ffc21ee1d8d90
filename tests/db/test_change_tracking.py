"""Local change tracking: application writes mark rows for push; bookkeeping and sync writes do not."""

from __future__ import annotations

import pytest


def versions(conn, table, row_id):
    return conn.execute(
        f"SELECT qbo_local_version, qbo_synced_version FROM {table} WHERE id = %s", (row_id,)
    ).fetchone()


def needs_push(conn, table, row_id) -> bool:
    local, synced = versions(conn, table, row_id)
    return local > synced


def mark_synced(conn, table, row_id, qbo_id="1"):
    """What the push does after QBO accepted the row: bookkeeping written as the sync."""
    with conn.transaction():
        conn.execute("SELECT qbo_sync.begin_applying_remote()")
        conn.execute(
            f"UPDATE {table} SET qbo_synced_version = qbo_local_version, qbo_id = %s,"
            " qbo_sync_token = '0', qbo_sync_status = 'synced' WHERE id = %s",
            (qbo_id, row_id),
        )


@pytest.fixture
def customer(conn, org):
    return conn.execute(
        "INSERT INTO customer_profile (organization_id, display_name) VALUES (%s, 'Ada') RETURNING id",
        (org,),
    ).fetchone()[0]


@pytest.fixture
def invoice(conn, org, customer):
    invoice_id = conn.execute(
        "INSERT INTO invoice_record (organization_id, customer_id) VALUES (%s, %s) RETURNING id",
        (org, customer),
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO invoice_line_item (organization_id, invoice_id, description, amount)"
        " VALUES (%s, %s, 'Consulting', 100)",
        (org, invoice_id),
    )
    mark_synced(conn, "invoice_record", invoice_id, "130")
    return invoice_id


def test_an_application_insert_needs_a_push(conn, customer):
    assert needs_push(conn, "customer_profile", customer)


def test_a_synced_row_is_clean_until_the_application_changes_a_synced_field(conn, customer):
    mark_synced(conn, "customer_profile", customer)
    assert not needs_push(conn, "customer_profile", customer)
    conn.execute("UPDATE customer_profile SET email = 'ada@example.com' WHERE id = %s", (customer,))
    assert needs_push(conn, "customer_profile", customer)
    row = conn.execute(
        "SELECT qbo_sync_status FROM customer_profile WHERE id = %s", (customer,)
    ).fetchone()
    assert row[0] == "pending"


def test_writes_to_columns_that_are_not_synced_do_not_count(conn, customer):
    mark_synced(conn, "customer_profile", customer)
    conn.execute(
        "UPDATE customer_profile SET updated_at = now(), balance = 42 WHERE id = %s", (customer,)
    )
    conn.execute(
        "UPDATE customer_profile SET email = email WHERE id = %s", (customer,)
    )  # no real change
    assert not needs_push(conn, "customer_profile", customer)


def test_the_applications_own_bookkeeping_trigger_does_not_mark_invoices(conn, org, invoice):
    # The app recomputes invoice totals from lines in a trigger of its own.
    conn.execute(
        """CREATE FUNCTION app_recompute_totals() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             UPDATE invoice_record SET subtotal = s.total, total_amount = s.total, balance_due = s.total
               FROM (SELECT sum(amount) AS total FROM invoice_line_item WHERE invoice_id = NEW.invoice_id) AS s
              WHERE id = NEW.invoice_id;
             RETURN NULL;
           END $$"""
    )
    conn.execute(
        "CREATE TRIGGER app_totals AFTER INSERT OR UPDATE ON invoice_line_item"
        " FOR EACH ROW EXECUTE FUNCTION app_recompute_totals()"
    )
    try:
        # a bookkeeping-only update of the invoice
        conn.execute(
            "UPDATE invoice_record SET total_amount = 100, balance_due = 100 WHERE id = %s",
            (invoice,),
        )
        assert not needs_push(conn, "invoice_record", invoice)
        # a real line change marks the invoice once, the totals trigger adds nothing
        before = versions(conn, "invoice_record", invoice)[0]
        conn.execute("UPDATE invoice_line_item SET amount = 150 WHERE invoice_id = %s", (invoice,))
        local, _ = versions(conn, "invoice_record", invoice)
        assert local == before + 1
        assert (
            conn.execute(
                "SELECT total_amount FROM invoice_record WHERE id = %s", (invoice,)
            ).fetchone()[0]
            == 150
        )
    finally:
        conn.execute("DROP TRIGGER app_totals ON invoice_line_item")
        conn.execute("DROP FUNCTION app_recompute_totals()")


def test_adding_or_removing_a_line_marks_the_invoice(conn, org, invoice):
    conn.execute(
        "INSERT INTO invoice_line_item (organization_id, invoice_id, description, amount, line_number)"
        " VALUES (%s, %s, 'Travel', 20, 2)",
        (org, invoice),
    )
    assert needs_push(conn, "invoice_record", invoice)
    mark_synced(conn, "invoice_record", invoice, "130")
    conn.execute(
        "DELETE FROM invoice_line_item WHERE invoice_id = %s AND line_number = 2", (invoice,)
    )
    assert needs_push(conn, "invoice_record", invoice)


def test_sync_writes_do_not_echo(conn, org, customer, invoice):
    mark_synced(conn, "customer_profile", customer)
    with conn.transaction():
        conn.execute("SELECT qbo_sync.begin_applying_remote()")
        conn.execute(
            "UPDATE customer_profile SET email = 'from-qbo@example.com' WHERE id = %s", (customer,)
        )
        conn.execute("UPDATE invoice_line_item SET amount = 999 WHERE invoice_id = %s", (invoice,))
        pulled = conn.execute(
            "INSERT INTO customer_profile (organization_id, display_name, qbo_id) VALUES (%s, 'Pulled', '77')"
            " RETURNING id",
            (org,),
        ).fetchone()[0]
    assert not needs_push(conn, "customer_profile", customer)
    assert not needs_push(conn, "invoice_record", invoice)
    assert not needs_push(conn, "customer_profile", pulled)
    # the flag ends with the transaction: the next application write counts again
    conn.execute(
        "UPDATE customer_profile SET email = 'local@example.com' WHERE id = %s", (customer,)
    )
    assert needs_push(conn, "customer_profile", customer)


def test_deleting_a_row_that_reached_qbo_is_remembered_for_the_push(conn, org, customer):
    never_synced = conn.execute(
        "INSERT INTO item_record (organization_id, name) VALUES (%s, 'Draft') RETURNING id", (org,)
    ).fetchone()[0]
    conn.execute("DELETE FROM item_record WHERE id = %s", (never_synced,))
    mark_synced(conn, "customer_profile", customer, "58")
    conn.execute("DELETE FROM customer_profile WHERE id = %s", (customer,))
    rows = conn.execute(
        "SELECT entity, qbo_id, qbo_sync_token FROM qbo_sync.local_deletion"
    ).fetchall()
    assert rows == [("customers", "58", "0")]


def test_push_local_changes_queues_one_push_per_dirty_entity(conn, org, customer, invoice):
    conn.execute("INSERT INTO item_record (organization_id, name) VALUES (%s, 'Widget')", (org,))
    queued = conn.execute("SELECT qbo_sync.push_local_changes()").fetchone()[0]
    assert queued == 2  # the customer and the item; the invoice is synced
    rows = conn.execute(
        "SELECT sync_endpoint, direction, source FROM qbo_sync_queue ORDER BY created_at"
    ).fetchall()
    assert rows == [("items", "push", "schedule"), ("customers", "push", "schedule")]
    # running again folds into the same pending jobs
    conn.execute("SELECT qbo_sync.push_local_changes()")
    assert conn.execute("SELECT count(*) FROM qbo_sync_queue").fetchone()[0] == 2


def test_deleting_an_invoice_cascades_without_error(conn, invoice):
    conn.execute("DELETE FROM invoice_record WHERE id = %s", (invoice,))
    assert conn.execute("SELECT count(*) FROM invoice_line_item").fetchone()[0] == 0
    assert conn.execute("SELECT qbo_id FROM qbo_sync.local_deletion").fetchall() == [("130",)]
