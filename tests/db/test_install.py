"""The installer: one transaction, idempotent, refuses edited migrations, upgrades to the same catalog."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import psycopg
import pytest

from qbo_sync import __version__
from qbo_sync.install import SQL_DIR, EditedMigrationError, InstallError, install
from tests.db.catalog import snapshot


@pytest.fixture
def fresh_db(pg_server):
    name = "install_" + uuid.uuid4().hex[:8]
    dsn = pg_server.create_database(name)
    yield dsn
    pg_server.drop_database(name)


@pytest.fixture
def sql_copy(tmp_path) -> Path:
    target = tmp_path / "sql"
    shutil.copytree(SQL_DIR, target)
    return target


def test_install_reports_what_it_did_and_the_version_is_queryable(fresh_db):
    report = install(fresh_db)
    assert report.previous_version is None and report.version == __version__
    assert report.migrations_applied == [
        p.stem for p in sorted((SQL_DIR / "incremental").glob("*.sql"))
    ]
    assert report.python_changed and "qbo_sync_db.secrets" in report.python_modules
    assert any("pg_cron is not available" in n for n in report.notices)  # not the cron database
    text = "\n".join(report.lines())
    assert "migrations applied: 001_qbo_application_tables" in text
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT qbo_sync.version()").fetchone()[0] == __version__
        # the in-database Python imports from the module table and agrees on the version
        assert conn.execute("SELECT qbo_sync.python_setup()").fetchone()[0] == __version__


def test_second_install_changes_nothing(fresh_db):
    install(fresh_db)
    before = snapshot(fresh_db)
    report = install(fresh_db)
    assert not report.changed and report.migrations_applied == [] and not report.python_changed
    assert "nothing new" in "\n".join(report.lines())
    assert snapshot(fresh_db) == before


def test_the_cron_database_gets_the_jobs_and_reinstall_keeps_them(cron_dsn):
    before = snapshot(cron_dsn)
    assert len(before["cron"]) == 9
    install(cron_dsn)
    assert snapshot(cron_dsn) == before


def test_a_failed_first_install_leaves_the_database_untouched(fresh_db, sql_copy):
    before = snapshot(fresh_db)
    broken = sql_copy / "idempotent" / "999_broken.sql"
    broken.write_text("SELECT 1 / 0;\n")
    with pytest.raises(InstallError, match="nothing was changed: division by zero"):
        install(fresh_db, sql_dir=sql_copy)
    assert snapshot(fresh_db) == before
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute(
            "SELECT to_regnamespace('qbo_sync'), to_regclass('public.qbo_sync_queue')"
        ).fetchone() == (None, None)


def test_a_failed_upgrade_leaves_the_database_as_it_was(fresh_db, sql_copy):
    install(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        org = conn.execute(
            "INSERT INTO organizations (name) VALUES ('Kept') RETURNING id"
        ).fetchone()[0]
    before = snapshot(fresh_db)
    (sql_copy / "incremental" / "004_new_table.sql").write_text(
        "CREATE TABLE public.qbo_new_thing (id int);\n"
    )
    (sql_copy / "idempotent" / "999_broken.sql").write_text("SELECT no_such_function();\n")
    with pytest.raises(InstallError, match="no_such_function"):
        install(fresh_db, sql_dir=sql_copy, version="9.9.9")
    assert snapshot(fresh_db) == before
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT name FROM organizations WHERE id = %s", (org,)).fetchone() == (
            "Kept",
        )


def test_an_edited_applied_migration_is_refused(fresh_db, sql_copy):
    install(fresh_db)
    before = snapshot(fresh_db)
    migration = sql_copy / "incremental" / "002_qbo_webhook_and_queue_tables.sql"
    migration.write_text(migration.read_text() + "\n-- an innocent edit\n")
    with pytest.raises(
        EditedMigrationError, match="002_qbo_webhook_and_queue_tables.sql was edited"
    ) as info:
        install(fresh_db, sql_dir=sql_copy)
    assert "put the change in a new migration" in str(info.value)
    assert snapshot(fresh_db) == before


def test_a_new_migration_is_applied_once(fresh_db, sql_copy):
    install(fresh_db)
    (sql_copy / "incremental" / "004_add_column.sql").write_text(
        "ALTER TABLE public.qbo_sync_history ADD COLUMN note text;\n"
    )
    report = install(fresh_db, sql_dir=sql_copy)
    assert report.migrations_applied == ["004_add_column"]
    assert install(fresh_db, sql_dir=sql_copy).migrations_applied == []


@pytest.mark.parametrize("applied_before", [1, 2])
def test_upgrading_an_older_schema_gives_the_same_catalog_as_a_fresh_install(
    pg_server, applied_before
):
    fresh_name, old_name = "fresh_" + uuid.uuid4().hex[:8], "old_" + uuid.uuid4().hex[:8]
    fresh, old = pg_server.create_database(fresh_name), pg_server.create_database(old_name)
    try:
        install(fresh)
        install(old, migration_limit=applied_before, migrations_only=True)
        report = install(old)
        assert len(report.migrations_applied) == 3 - applied_before
        assert snapshot(old) == snapshot(fresh)
    finally:
        pg_server.drop_database(fresh_name)
        pg_server.drop_database(old_name)


def test_existing_application_tables_are_kept_and_extended(fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE organizations (id uuid PRIMARY KEY, name text NOT NULL, plan text)"
        )
        conn.execute("INSERT INTO organizations VALUES (gen_random_uuid(), 'Existing', 'pro')")
    install(fresh_db)
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT name, plan FROM organizations").fetchall() == [
            ("Existing", "pro")
        ]
        created = dict(
            conn.execute(
                "SELECT table_name, created_by_qbo_sync FROM qbo_sync.app_table"
            ).fetchall()
        )
        assert created["organizations"] is False and created["customer_profile"] is True
        rls = conn.execute(
            "SELECT relname, relrowsecurity FROM pg_class WHERE relname IN ('organizations', 'customer_profile')"
        ).fetchall()
        assert dict(rls) == {"organizations": False, "customer_profile": True}


def test_code_and_schema_version_mismatch_is_detected_never_run(fresh_db):
    install(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("UPDATE qbo_sync.python_module SET version = '0.0.1'")
        with pytest.raises(
            psycopg.errors.InternalError_, match="do not match the installed schema"
        ):
            conn.execute("SELECT qbo_sync.secret('QBO_SYNC_TOKEN_KEY')")
    install(fresh_db)  # a reinstall repairs it
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        assert conn.execute("SELECT qbo_sync.secret('QBO_SYNC_TOKEN_KEY') IS NOT NULL").fetchone()[
            0
        ]


def test_upgraded_code_is_picked_up_by_a_running_backend(fresh_db, tmp_path):
    install(fresh_db)
    python_copy = tmp_path / "plpython"
    shutil.copytree(Path(__file__).resolve().parents[2] / "plpython", python_copy)
    init = python_copy / "qbo_sync_db" / "__init__.py"
    init.write_text(
        init.read_text().replace(f'__version__ = "{__version__}"', '__version__ = "9.9.9"')
    )
    with psycopg.connect(fresh_db, autocommit=True) as backend:
        assert backend.execute("SELECT qbo_sync.python_setup()").fetchone()[0] == __version__
        install(fresh_db, python_dir=python_copy, version="9.9.9")
        assert backend.execute("SELECT qbo_sync.python_setup()").fetchone()[0] == "9.9.9"
