"""The installer under a hostile database owner: code planted in `public` never runs as the
installing superuser."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from qbo_sync.install import install


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
