"""The installer under a hostile database owner or a busy application: code planted in `public`
never runs as the installing superuser; the owner of `public` and of the application tables is
named in a warning; a session holding a lock ends the installation after `lock_timeout`, with
the session named and nothing changed."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from qbo_sync.install import SQL_DIR, InstallError, install
from tests.clitools import assert_one_line_error, run_qbo_sync
from tests.db.catalog import snapshot


@dataclass
class OwnedDatabase:
    """A database owned by a login role that is not a superuser; qbo-sync not yet installed."""

    role: str
    superuser_dsn: str
    owner_dsn: str


@pytest.fixture
def owned_db(pg_server) -> Iterator[OwnedDatabase]:
    suffix = uuid.uuid4().hex[:8]
    role, name = f"db_owner_{suffix}", f"owned_{suffix}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER")
        conn.execute(f"CREATE DATABASE {name} OWNER {role}")
    yield OwnedDatabase(role, pg_server.dsn(name), pg_server.dsn(name, user=role))
    pg_server.drop_database(name)
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f"DROP ROLE {role}")


#: Functions a database owner can create in `public` (PostgreSQL 15: it owns the schema through
#: pg_database_owner) that are a closer match than pg_catalog's polymorphic or variadic ones for
#: calls the installer's SQL makes unqualified: (signature, result type, body of the result).
PLANTED = [
    ("unnest(a text[])", "SETOF text", "RETURN QUERY SELECT x FROM pg_catalog.unnest(a) AS x;"),
    ("format(f text, a text)", "text", "RETURN pg_catalog.format(f, a);"),
    ("format(f text, a name)", "text", "RETURN pg_catalog.format(f, a);"),
    ("format(f text, a regprocedure)", "text", "RETURN pg_catalog.format(f, a);"),
    ("format(f text, a text, b text)", "text", "RETURN pg_catalog.format(f, a, b);"),
    ("pg_advisory_xact_lock(k integer)", "void", "PERFORM pg_catalog.pg_advisory_xact_lock(k);"),
    ("array_length(a text[], d integer)", "integer", "RETURN pg_catalog.array_length(a, d);"),
]


def plant(owner_dsn: str, role: str) -> None:
    """As the database owner: a log table, and each PLANTED function, which logs its call and
    makes `role` a superuser when it runs as one."""
    with psycopg.connect(owner_dsn, autocommit=True) as owner:
        owner.execute("CREATE TABLE public.planted_call (name text, as_role text)")
        owner.execute("GRANT INSERT ON public.planted_call TO PUBLIC")
        for signature, returns, body in PLANTED:
            owner.execute(
                f"""CREATE FUNCTION public.{signature} RETURNS {returns} LANGUAGE plpgsql AS $$
                    BEGIN
                        INSERT INTO public.planted_call VALUES ('{signature}', current_user);
                        IF (SELECT rolsuper FROM pg_catalog.pg_roles
                             WHERE rolname = current_user) THEN
                            EXECUTE 'ALTER ROLE {role} SUPERUSER';
                        END IF;
                        {body}
                    END $$"""
            )


def planted_calls(dsn: str, role: str) -> tuple[list[tuple[str, str]], bool]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        calls = conn.execute("SELECT name, as_role FROM public.planted_call").fetchall()
        (superuser,) = conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)
        ).fetchone()
    return calls, superuser


def test_functions_the_database_owner_plants_in_public_never_run_as_the_installer(owned_db):
    plant(owned_db.owner_dsn, owned_db.role)  # before the first installation (the migrations)
    install(owned_db.superuser_dsn)
    assert planted_calls(owned_db.superuser_dsn, owned_db.role) == ([], False)
    install(owned_db.superuser_dsn, version="9.9.9")  # an upgrade re-runs every idempotent file
    assert planted_calls(owned_db.superuser_dsn, owned_db.role) == ([], False)
    with psycopg.connect(owned_db.superuser_dsn) as conn:  # pgcrypto went to public, by name
        assert conn.execute(
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pgcrypto'"
        ).fetchone() == ("public",)


@pytest.fixture
def fresh_install_db(pg_server) -> Iterator[str]:
    name = "install_sec_" + uuid.uuid4().hex[:8]
    yield pg_server.create_database(name)
    pg_server.drop_database(name)


def test_migration_001s_unqualified_extensions_land_where_they_did(fresh_install_db):
    """Under the pinned search path, 001's `CREATE EXTENSION IF NOT EXISTS pgcrypto` finds the
    one the installer created in public; plpython3u's control file fixes its schema."""
    install(fresh_install_db)
    with psycopg.connect(fresh_install_db) as conn:
        assert conn.execute(
            "SELECT extname, extnamespace::regnamespace::text FROM pg_extension"
            " WHERE extname IN ('pgcrypto', 'plpython3u') ORDER BY 1"
        ).fetchall() == [("pgcrypto", "public"), ("plpython3u", "pg_catalog")]
        assert conn.execute(
            "SELECT schema FROM pg_available_extension_versions WHERE name = 'plpython3u'"
        ).fetchall() == [("pg_catalog",)]


def test_pgcrypto_already_in_another_schema_stays_there(fresh_install_db):
    with psycopg.connect(fresh_install_db, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA extensions")
        conn.execute("CREATE EXTENSION pgcrypto SCHEMA extensions")
    install(fresh_install_db)
    with psycopg.connect(fresh_install_db, autocommit=True) as conn:
        assert conn.execute(
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pgcrypto'"
        ).fetchone() == ("extensions",)
        assert (
            "extensions.pgp_sym_encrypt"
            in conn.execute(
                "SELECT pg_get_functiondef('qbo_sync.encrypt_token(text)'::regprocedure)"
            ).fetchone()[0]
        )
        # and tokens go in and come back out through it
        assert conn.execute(
            "SELECT qbo_sync.decrypt_token(qbo_sync.encrypt_token(%s))", ("a-token-value",)
        ).fetchone() == ("a-token-value",)


def test_a_database_owned_by_another_role_is_named_with_the_fix(owned_db):
    role = owned_db.role
    with psycopg.connect(owned_db.owner_dsn, autocommit=True) as owner:
        owner.execute("CREATE TABLE public.organizations (id uuid PRIMARY KEY, name text NOT NULL)")
    warnings = install(owned_db.superuser_dsn).warnings
    assert warnings == [
        f"{role} owns schema public (as the database owner, through pg_database_owner), so it can "
        "drop qbo-sync's tables there and put its own in their place, which qbo-sync's jobs would "
        "then use as postgres; fix: ALTER SCHEMA public OWNER TO postgres;",
        f"{role} owns table public.organizations, so its triggers and rules run with the rights "
        "of whoever writes it, the sync included (postgres); "
        "fix: ALTER TABLE public.organizations OWNER TO postgres;",
    ]
    with psycopg.connect(owned_db.superuser_dsn, autocommit=True) as conn:
        conn.execute("ALTER SCHEMA public OWNER TO postgres")
        conn.execute("ALTER TABLE public.organizations OWNER TO postgres")
    assert install(owned_db.superuser_dsn).warnings == []


def test_create_on_public_through_pg_database_owner_is_named(owned_db):
    """public owned by the installer, but the database owner may still create in it."""
    with psycopg.connect(owned_db.superuser_dsn, autocommit=True) as conn:
        conn.execute("ALTER SCHEMA public OWNER TO postgres")
        conn.execute("GRANT CREATE ON SCHEMA public TO pg_database_owner")
    assert install(owned_db.superuser_dsn).warnings == [
        f"{owned_db.role} (as the database owner, through pg_database_owner) can create objects "
        "in schema public; only its owner and superusers should, since an object planted there "
        "can shadow one the application or qbo-sync uses; "
        "fix: REVOKE CREATE ON SCHEMA public FROM pg_database_owner;"
    ]


def test_the_check_runs_before_anything_else_and_a_failed_install_keeps_it(owned_db, tmp_path):
    """The warnings come from the database as it was, and reach the user even when the
    installation then fails."""
    broken = tmp_path / "sql"
    shutil.copytree(SQL_DIR, broken)
    (broken / "idempotent" / "999_broken.sql").write_text("SELECT 1 / 0;\n")
    with pytest.raises(InstallError, match="division by zero") as info:
        install(owned_db.superuser_dsn, sql_dir=broken)
    assert [w.split(",")[0] for w in info.value.warnings] == [
        f"{owned_db.role} owns schema public (as the database owner"
    ]
    result = run_qbo_sync("install", "--dsn", owned_db.superuser_dsn)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"warning: {owned_db.role} owns schema public"), result.stderr


def test_no_warning_when_the_installer_owns_the_database_and_public(fresh_install_db):
    assert install(fresh_install_db).warnings == []
    result = run_qbo_sync("install", "--dsn", fresh_install_db)
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr


@pytest.fixture
def reader_holding_the_queue(fresh_install_db) -> Iterator[tuple[str, int]]:
    """An installed database and a session idle in a transaction that read qbo_sync_queue (it
    holds ACCESS SHARE on it until it ends): (dsn, its pid)."""
    install(fresh_install_db)
    reader = psycopg.connect(fresh_install_db, application_name="idle_reader")
    reader.execute("SELECT count(*) FROM qbo_sync_queue")
    pid = reader.info.backend_pid
    try:
        yield fresh_install_db, pid
    finally:
        reader.rollback()
        reader.close()


def test_an_idle_transaction_ends_the_upgrade_after_the_lock_timeout(reader_holding_the_queue):
    dsn, pid = reader_holding_the_queue
    before = snapshot(dsn)
    with pytest.raises(InstallError) as info:
        install(dsn, version="9.9.9", lock_timeout=0.5)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("installation failed, nothing was changed: ")
    assert "waited 0.5 s for a lock on public.qbo_sync_queue" in message
    assert f"pid {pid} (application_name idle_reader, user postgres, idle in transaction" in message
    assert f"pg_terminate_backend({pid})" in message and "--lock-timeout" in message
    assert snapshot(dsn) == before


def test_the_cli_takes_a_lock_timeout_and_fails_on_one_line(reader_holding_the_queue):
    dsn, pid = reader_holding_the_queue
    with psycopg.connect(dsn, autocommit=True) as conn:  # an upgrade: something to change
        conn.execute("UPDATE qbo_sync.installation SET version = '0.0.9'")
    result = run_qbo_sync("install", "--dsn", dsn, "--lock-timeout", "0.3")
    assert_one_line_error(
        result,
        1,
        "qbo-sync install: installation failed, nothing was changed: waited 0.3 s for a lock",
        f"pid {pid} (application_name idle_reader",
        "run qbo-sync install again",
    )
