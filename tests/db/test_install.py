"""The installer: one transaction, idempotent, refuses edited migrations, upgrades to the same
catalog; says what privileges it needs, which application table is in its way, and which schemas
other roles can create objects in."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import psycopg
import pytest

from qbo_sync import __version__
from qbo_sync.install import (
    SQL_DIR,
    EditedMigrationError,
    InstallError,
    PrivilegeError,
    install,
    migration_files,
)
from tests.clitools import assert_one_line_error, run_qbo_sync
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
    assert len(before["cron"]) == 10  # the guide's nine and the drift audit
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
        assert len(report.migrations_applied) == len(migration_files(SQL_DIR)) - applied_before
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
        with pytest.raises(psycopg.Error, match="do not match the installed schema") as failure:
            conn.execute("SELECT qbo_sync.secret('QBO_SYNC_TOKEN_KEY')")
        assert failure.value.sqlstate == "QS001"  # an explicit SQLSTATE, never retried
        assert not conn.execute("SELECT qbo_sync.error_is_retryable('QS001')").fetchone()[0]
    install(fresh_db)  # a reinstall repairs it
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        assert conn.execute("SELECT qbo_sync.secret('QBO_SYNC_TOKEN_KEY') IS NOT NULL").fetchone()[
            0
        ]


def test_changed_code_under_the_same_version_is_picked_up_by_a_running_backend(fresh_db, tmp_path):
    """A re-install of changed in-database Python under an unchanged version reaches backends
    that imported the old code (they compare a hash of the installed sources on every call)."""
    install(fresh_db)
    python_copy = tmp_path / "plpython"
    shutil.copytree(Path(__file__).resolve().parents[2] / "plpython", python_copy)
    probe = python_copy / "qbo_sync_db" / "probe_for_test.py"
    probe.write_text("MARK = 'first'\n")
    install(fresh_db, python_dir=python_copy)
    with psycopg.connect(fresh_db, autocommit=True) as backend:
        backend.execute(
            """CREATE FUNCTION qbo_sync.probe() RETURNS text LANGUAGE plpython3u AS $$
if not SD.get("qbo_sync_ready"):
    plpy.execute("SELECT qbo_sync.python_loader()")
    SD["qbo_sync_ready"] = GD["qbo_sync_load"](plpy) is not None
from qbo_sync_db import probe_for_test
return probe_for_test.MARK
$$"""
        )
        assert backend.execute("SELECT qbo_sync.probe()").fetchone()[0] == "first"
        assert backend.execute("SELECT qbo_sync.probe()").fetchone()[0] == "first"  # fast path
        probe.write_text("MARK = 'second'\n")
        report = install(fresh_db, python_dir=python_copy)
        assert report.python_changed and report.previous_version == report.version  # same version
        assert backend.execute("SELECT qbo_sync.probe()").fetchone()[0] == "second"
        assert backend.execute("SELECT qbo_sync.python_setup()").fetchone()[0] == __version__


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


@pytest.fixture
def owner_db(pg_server):
    """A database owned by a login role that is not a superuser (the usual application owner)."""
    suffix = uuid.uuid4().hex[:8]
    role, name = f"app_owner_{suffix}", f"owned_{suffix}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"CREATE DATABASE {name} OWNER {role}")
    yield pg_server.dsn(name), pg_server.dsn(name, user=role)
    pg_server.drop_database(name)
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f"DROP ROLE {role}")


def test_a_non_superuser_owner_is_told_that_a_superuser_must_install(owner_db):
    superuser_dsn, owner_dsn = owner_db
    before = snapshot(superuser_dsn)
    with pytest.raises(PrivilegeError) as info:
        install(owner_dsn)
    message = str(info.value)
    assert "is not a superuser" in message and "plpython3u is an untrusted language" in message
    assert "run qbo-sync install as a superuser" in message and "not enough" not in message
    assert snapshot(superuser_dsn) == before

    # a superuser creating the extension first does not make it installable by the owner
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION plpython3u")
    with pytest.raises(PrivilegeError, match="it exists here, but that is not enough"):
        install(owner_dsn)
    assert install(superuser_dsn).migrations_applied  # what the message says to do works


def test_the_cli_gives_the_privilege_requirement_on_one_line(owner_db):
    result = run_qbo_sync("install", "--dsn", owner_db[1])
    assert_one_line_error(
        result, 1, "qbo-sync install: cannot install qbo-sync: role app_owner_", "superuser"
    )


@pytest.mark.parametrize(
    ("existing", "postgres_says", "conflict"),
    [
        (
            "CREATE TABLE invoice_record (id bigint PRIMARY KEY, organization_id uuid)",
            'detail: Key columns "invoice_id" and "id" are of incompatible types: uuid and bigint.',
            "conflict: your table public.invoice_record already exists and its column id is "
            "bigint, but public.invoice_line_item.invoice_id (uuid) references it: qbo-sync "
            "needs id uuid",
        ),
        (
            "CREATE TABLE invoice_record (id uuid, organization_id uuid)",
            'there is no unique constraint matching given keys for referenced table "invoice_record"',
            "conflict: your table public.invoice_record already exists and its column id is "
            "neither its primary key nor unique",
        ),
    ],
)
def test_an_application_table_in_the_way_is_named_with_postgres_detail(
    fresh_db, existing, postgres_says, conflict
):
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(existing)
    before = snapshot(fresh_db)
    with pytest.raises(InstallError) as info:
        install(fresh_db)
    message = str(info.value)
    first, where = message.splitlines()[:2]
    assert first.startswith("installation failed, nothing was changed: ")
    assert postgres_says in message and conflict in message
    # the file, the line of the failing statement, and the table it creates
    migration = "001_qbo_application_tables.sql"
    assert where.startswith(f"in: sql/incremental/{migration} line ")
    assert where.endswith(", table public.invoice_line_item")
    line = int(where.split(" line ")[1].split(",")[0])
    text = (SQL_DIR / "incremental" / migration).read_text().splitlines()
    assert text[line - 1] == "CREATE TABLE IF NOT EXISTS public.invoice_line_item ("
    assert snapshot(fresh_db) == before


def test_install_warns_about_schemas_other_roles_can_create_in(pg_server, fresh_db):
    role = "schema_writer_" + uuid.uuid4().hex[:8]
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role}")
    try:
        clean = run_qbo_sync("install", "--dsn", fresh_db)
        assert clean.returncode == 0 and "warning" not in clean.stderr, clean.stderr
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute(f"GRANT CREATE ON SCHEMA public, qbo_sync TO {role}")
        warned = run_qbo_sync("install", "--dsn", fresh_db)
        assert warned.returncode == 0 and "nothing new" in warned.stdout
        warnings = warned.stderr.strip().splitlines()
        assert warnings == [
            f"warning: {role} can create objects in schema public; only its owner and superusers"
            " should, since an object planted there can shadow one the application or qbo-sync"
            f" uses; fix: REVOKE CREATE ON SCHEMA public FROM {role};",
            f"warning: {role} can create objects in schema qbo_sync; only its owner and superusers"
            " should, since an object planted there can shadow one the application or qbo-sync"
            f" uses; fix: REVOKE CREATE ON SCHEMA qbo_sync FROM {role};",
        ]
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
            conn.execute(f"REVOKE CREATE ON SCHEMA qbo_sync FROM {role}")
        assert install(fresh_db).warnings == [
            f"PUBLIC, {role} can create objects in schema public; only its owner and superusers"
            " should, since an object planted there can shadow one the application or qbo-sync"
            f" uses; fix: REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role};"
        ]
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}")
        assert install(fresh_db).warnings == []
    finally:
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute(f"REVOKE ALL ON SCHEMA public, qbo_sync FROM {role}")
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")
