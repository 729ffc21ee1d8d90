"""An upgrade from each earlier release keeps the data and ends with the same catalog as a fresh
install. The releases' sql/ and plpython/ are frozen in tests/fixtures/release-<version>.tar.gz
(`git archive` of commits 1762821, 170fad5 and ad9779a), so the test needs no repository history."""

from __future__ import annotations

import tarfile
import uuid
from pathlib import Path

import psycopg

from qbo_sync import __version__
from qbo_sync.install import SQL_DIR, install, migration_files
from tests.db.catalog import snapshot

RELEASE_0_1_0 = Path(__file__).resolve().parents[1] / "fixtures" / "release-0.1.0.tar.gz"
RELEASE_0_2_0 = Path(__file__).resolve().parents[1] / "fixtures" / "release-0.2.0.tar.gz"
RELEASE_0_3_0 = Path(__file__).resolve().parents[1] / "fixtures" / "release-0.3.0.tar.gz"


def extract(release: Path, into: Path) -> None:
    """A frozen release's sql/ and plpython/ under `into`."""
    with tarfile.open(release) as archive:
        # the "data" filter where this Python has it (3.11.4 and later; Debian 12 has 3.11.2)
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(into, **safe)


def test_upgrading_release_0_1_0_keeps_data_and_matches_a_fresh_install(pg_server, tmp_path):
    extract(RELEASE_0_1_0, tmp_path)
    names = ["old_" + uuid.uuid4().hex[:8], "fresh_" + uuid.uuid4().hex[:8]]
    old, fresh = (pg_server.create_database(name) for name in names)
    try:
        install(old, sql_dir=tmp_path / "sql", python_dir=tmp_path / "plpython", version="0.1.0")
        with psycopg.connect(old, autocommit=True) as conn:
            org = conn.execute(
                "INSERT INTO organizations (name) VALUES ('Kept') RETURNING id"
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO qbo_connection (organization_id, realm_id) VALUES (%s, '4620')", (org,)
            )
            job = conn.execute("SELECT trigger_qbo_sync(%s, 'items')", (org,)).fetchone()[0]
            # 0.1.0 let an unsigned webhook sit as 'received'; the upgrade rejects it
            conn.execute("INSERT INTO qbo_webhook_log (body, signature_valid) VALUES ('x', false)")
            conn.execute(
                "INSERT INTO customer_profile (organization_id, display_name, qbo_id)"
                " VALUES (%s, 'Gone', '5')",
                (org,),
            )
            conn.execute("DELETE FROM customer_profile")

        report = install(old)
        assert report.previous_version == "0.1.0" and report.version != "0.1.0"
        assert report.migrations_applied == [
            p.stem for p in migration_files(SQL_DIR) if p.stem > "004"
        ]
        install(fresh)
        assert snapshot(old) == snapshot(fresh)

        with psycopg.connect(old, autocommit=True) as conn:
            assert conn.execute("SELECT id, status FROM qbo_sync_queue").fetchall() == [
                (job, "pending")
            ]
            assert conn.execute("SELECT status FROM qbo_webhook_log").fetchall() == [("rejected",)]
            assert conn.execute(
                "SELECT entity, qbo_id FROM qbo_sync.local_deletion"
            ).fetchall() == [("customers", "5")]
            # the upgraded code runs: the worker takes the job (a 0.1.0 connection without
            # tokens cannot be refreshed, which is no outage to wait for), and the built-in
            # handler stops at once: the 0.1.0 connection has no tokens
            conn.execute("CALL qbo_sync_worker(2, NULL, true)")
            status, attempts, error = conn.execute(
                "SELECT status, attempts, last_error FROM qbo_sync_queue"
            ).fetchone()
            assert (status, attempts) == ("failed", 1), error
            assert "the connection has no access token" in error
            # and the application role lost its 0.1.0 write access to the queue
            assert not conn.execute(
                "SELECT has_table_privilege('qbo_sync_app', 'qbo_sync_queue', 'INSERT')"
                " OR has_table_privilege('qbo_sync_app', 'qbo_sync_queue', 'UPDATE')"
            ).fetchone()[0]
    finally:
        for name in names:
            pg_server.drop_database(name)


def test_upgrading_release_0_2_0_keeps_jobs_and_runs_them_with_the_new_worker(pg_server, tmp_path):
    """0.2.0 (`git archive` of commit 170fad5) ran a job inside one function under a row lock on
    qbo_sync.organization_lock; 0.3.0 runs it in a procedure that commits as it goes, holding
    the organization by a lease. An organization row and a queued job made by 0.2.0 carry over."""
    extract(RELEASE_0_2_0, tmp_path)
    names = ["old_" + uuid.uuid4().hex[:8], "fresh_" + uuid.uuid4().hex[:8]]
    old, fresh = (pg_server.create_database(name) for name in names)
    try:
        install(old, sql_dir=tmp_path / "sql", python_dir=tmp_path / "plpython", version="0.2.0")
        with psycopg.connect(old, autocommit=True) as conn:
            org = conn.execute(
                "INSERT INTO organizations (name) VALUES ('Kept') RETURNING id"
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO qbo_connection (organization_id, realm_id, qbo_token_expires_at)"
                " VALUES (%s, '4620', now() + interval '1 hour')",
                (org,),
            )
            conn.execute("INSERT INTO qbo_sync.organization_lock VALUES (%s)", (org,))
            job = conn.execute("SELECT trigger_qbo_sync(%s, 'items')", (org,)).fetchone()[0]

        report = install(old)
        assert (report.previous_version, report.version) == ("0.2.0", __version__)
        assert report.migrations_applied == [
            p.stem for p in migration_files(SQL_DIR) if p.stem[:3] > "005"
        ]
        install(fresh)
        assert snapshot(old) == snapshot(fresh)

        with psycopg.connect(old, autocommit=True) as conn:
            assert conn.execute(
                "SELECT organization_id, job_id FROM qbo_sync.organization_lock"
            ).fetchall() == [(org, None)]
            # the new worker takes the old job: the engine stops at once (no tokens here)
            conn.execute("CALL qbo_sync_worker(2, NULL, true)")
            status, error = conn.execute(
                "SELECT status, last_error FROM qbo_sync_queue WHERE id = %s", (job,)
            ).fetchone()
            assert status == "failed" and "the connection has no access token" in error
            assert conn.execute(
                "SELECT job_id FROM qbo_sync.organization_lock WHERE organization_id = %s", (org,)
            ).fetchone() == (None,)
    finally:
        for name in names:
            pg_server.drop_database(name)


def test_upgrading_release_0_3_0_keeps_synced_rows_and_conflicts(pg_server, tmp_path):
    """0.3.0 (`git archive` of commit ad9779a) synced rows and kept conflicts without their class,
    base or policy; after the upgrade a synced row, a pending one and an old conflict are intact,
    the new columns have their defaults, and the catalog equals a fresh install."""
    extract(RELEASE_0_3_0, tmp_path)
    names = ["old_" + uuid.uuid4().hex[:8], "fresh_" + uuid.uuid4().hex[:8]]
    old, fresh = (pg_server.create_database(name) for name in names)
    try:
        install(old, sql_dir=tmp_path / "sql", python_dir=tmp_path / "plpython", version="0.3.0")
        with psycopg.connect(old, autocommit=True) as conn:
            org = conn.execute(
                "INSERT INTO organizations (name) VALUES ('Kept') RETURNING id"
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO customer_profile (organization_id, display_name) VALUES (%s, 'Local')",
                (org,),
            )
            conn.execute("BEGIN")
            conn.execute("SELECT qbo_sync.begin_applying_remote()")
            conn.execute(
                "INSERT INTO customer_profile (organization_id, display_name, qbo_id,"
                " qbo_sync_token, qbo_sync_status) VALUES (%s, 'Pulled', '7', '2', 'synced')",
                (org,),
            )
            conn.execute("COMMIT")
            conn.execute(
                "INSERT INTO qbo_sync_conflict (organization_id, entity, qbo_id, local_values,"
                " remote_values) VALUES (%s, 'customers', '7', '{\"email\": \"a@x\"}',"
                ' \'{"email": "b@x"}\')',
                (org,),
            )

        report = install(old)
        assert (report.previous_version, report.version) == ("0.3.0", __version__)
        assert report.migrations_applied == [
            p.stem for p in migration_files(SQL_DIR) if p.stem[:3] > "006"
        ]
        install(fresh)
        assert snapshot(old) == snapshot(fresh)

        with psycopg.connect(old, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT display_name, qbo_sync_status, qbo_sync_attempts, qbo_sync_error_class"
                " FROM customer_profile ORDER BY display_name"
            ).fetchall()
            assert rows == [("Local", "pending", 0, None), ("Pulled", "synced", 0, None)]
            assert conn.execute(
                "SELECT remote_values, status, policy, fields FROM qbo_sync_conflict"
            ).fetchall() == [({"email": "b@x"}, "resolved", "qbo_wins", [])]
    finally:
        for name in names:
            pg_server.drop_database(name)
