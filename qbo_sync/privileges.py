"""What the installing role must be allowed to do, and schemas that are too open.

qbo-sync creates PL/Python functions, and plpython3u is an untrusted language: PostgreSQL lets
only superusers create it and functions written in it. So the installer runs as a superuser;
`missing_privileges` says so, before anything changes, when it does not. Before the installation
changes anything, `open_schema_warnings` names the roles other than the installing one and
superusers that own, or can create objects in, the schemas qbo-sync uses, and those that own the
application tables it writes.
"""

from __future__ import annotations

import psycopg

PRIVILEGE_ADVICE = (
    "run qbo-sync install as a superuser (e.g. --dsn postgresql://postgres@host/database); "
    'the README section "Privileges" lists what it needs'
)


PRIVILEGES_SQL = """
SELECT current_user,
       r.rolsuper,
       coalesce(l.lanpltrusted, false),
       l.oid IS NOT NULL,
       EXISTS (SELECT FROM pg_extension WHERE extname = 'pgcrypto'),
       has_database_privilege(current_database(), 'CREATE'),
       coalesce((SELECT setting FROM pg_settings WHERE name = 'cron.database_name')
                = current_database(), false),  -- pg_settings: hidden, not an error, for most roles
       EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron')
  FROM pg_roles AS r
  LEFT JOIN pg_language AS l ON l.lanname = 'plpython3u'
 WHERE r.rolname = current_user
"""


def missing_privileges(conn: psycopg.Connection) -> list[str]:
    """What the connecting role lacks to install qbo-sync (nothing for a superuser), and why.

    - plpython3u is an untrusted language: only a superuser can create the extension and the
      functions written in it, so a superuser creating the extension beforehand is not enough;
    - pgcrypto is trusted: the role needs CREATE on the database, or a superuser creates it first;
    - in pg_cron's database (`cron.database_name`) a superuser must create pg_cron first.
    """
    row = conn.execute(PRIVILEGES_SQL).fetchone()
    assert row is not None
    role, superuser, python_trusted, python_exists, has_pgcrypto, can_create = row[:6]
    cron_database, has_pg_cron = row[6:]
    if superuser:
        return []
    problems = []
    if not python_trusted:
        problems.append(
            "plpython3u is an untrusted language, and PostgreSQL lets only superusers create it "
            "and the PL/Python functions qbo-sync installs"
            + (" (it exists here, but that is not enough)" if python_exists else "")
        )
    if not has_pgcrypto and not can_create:
        problems.append(
            "pgcrypto needs CREATE on the database, or a superuser to run CREATE EXTENSION "
            "pgcrypto first"
        )
    if cron_database and not has_pg_cron:
        problems.append(
            "this is pg_cron's database (cron.database_name): a superuser must run "
            "CREATE EXTENSION pg_cron here first"
        )
    return [f"role {role} is not a superuser", *problems] if problems else []


#: The application tables qbo-sync writes (created by migration 001 when the application has
#: none; an application's own are kept, with their owner).
APPLICATION_TABLES = (
    "organizations",
    "customer_profile",
    "item_record",
    "invoice_record",
    "invoice_line_item",
    "invoice_payment",
)

#: pg_database_owner stands for the owner of the current database (on PostgreSQL 15 it owns
#: schema public); `acting_role` puts that owner in its place, so that it is named and checked.
ROLES_CTE = """
WITH database_owner AS (
    SELECT d.datdba AS oid FROM pg_database AS d WHERE d.datname = current_database()
),
acting_role AS (
    SELECT r.oid AS role,
           CASE WHEN r.rolname = 'pg_database_owner' THEN o.oid ELSE r.oid END AS acting,
           r.rolname = 'pg_database_owner' AS through_database_owner
      FROM pg_roles AS r CROSS JOIN database_owner AS o
),
qbo_schema AS (
    SELECT n.oid, n.nspname, n.nspacl, n.nspowner, a.acting AS owner
      FROM pg_namespace AS n
      JOIN acting_role AS a ON a.role = n.nspowner
     WHERE n.nspname IN ('public', 'qbo_sync')
        OR n.oid = (SELECT x.extnamespace FROM pg_extension AS x WHERE x.extname = 'pgcrypto')
)
"""

#: Roles that are neither superusers nor the installing role, since those may act as that role.
UNTRUSTED = "NOT (u.rolsuper OR u.rolname = current_user)"

#: Schemas qbo-sync uses whose owner (the database owner for pg_database_owner) is another role:
#: schema, owner, whether it owns it through pg_database_owner.
SCHEMA_OWNERS_SQL = f"""{ROLES_CTE}
SELECT quote_ident(s.nspname), quote_ident(u.rolname), a.through_database_owner
  FROM qbo_schema AS s
  JOIN acting_role AS a ON a.role = s.nspowner
  JOIN pg_roles AS u ON u.oid = s.owner
 WHERE {UNTRUSTED}
 ORDER BY 1
"""

#: Schemas qbo-sync uses where roles other than superusers, the installing role and the
#: schema's owner may create objects: schema, who (for pg_database_owner: the database owner and
#: how), and the grantees to revoke from (as the schema's ACL names them).
OPEN_SCHEMAS_SQL = f"""{ROLES_CTE}
SELECT quote_ident(s.nspname),
       string_agg(CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                       WHEN a.through_database_owner
                       THEN quote_ident(u.rolname)
                            || ' (as the database owner, through pg_database_owner)'
                       ELSE quote_ident(u.rolname) END,
                  ', ' ORDER BY g.grantee <> 0, u.rolname),
       string_agg(CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END,
                  ', ' ORDER BY g.grantee <> 0, u.rolname)
  FROM qbo_schema AS s
 CROSS JOIN LATERAL aclexplode(coalesce(s.nspacl, acldefault('n', s.nspowner))) AS g
  LEFT JOIN acting_role AS a ON a.role = g.grantee
  LEFT JOIN pg_roles AS u ON u.oid = a.acting
 WHERE g.privilege_type = 'CREATE'
   AND (g.grantee = 0 OR ({UNTRUSTED} AND u.oid <> s.owner))
 GROUP BY s.oid, s.nspname
 ORDER BY 1
"""

#: Application tables (in public) owned by another role than a superuser or the installing one:
#: table, owner.
TABLE_OWNERS_SQL = f"""{ROLES_CTE}
SELECT format('%%I.%%I', n.nspname, c.relname), quote_ident(u.rolname)
  FROM pg_class AS c
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
  JOIN acting_role AS a ON a.role = c.relowner
  JOIN pg_roles AS u ON u.oid = a.acting
 WHERE n.nspname = 'public' AND c.relname = ANY(%(tables)s::text[]) AND {UNTRUSTED}
 ORDER BY array_position(%(tables)s::text[], c.relname::text)
"""


def open_schema_warnings(conn: psycopg.Connection) -> list[str]:
    """What lets a role other than the installing one (or a superuser) change what qbo-sync's
    code, run as the installing role, works on; one warning each, naming the role and the fix:

    - the owner of a schema qbo-sync uses may drop qbo-sync's tables there and replace them;
    - another role that may create objects in such a schema can shadow a function or table;
    - the owner of an application table can put a trigger on it, run by whoever writes it.

    The database owner is named in place of pg_database_owner, which owns public on PostgreSQL 15.
    """
    installer = conn.execute("SELECT quote_ident(current_user)").fetchone()
    assert installer is not None
    warnings = [
        _owned_schema_warning(schema, owner, through, installer[0])
        for schema, owner, through in conn.execute(SCHEMA_OWNERS_SQL).fetchall()
    ]
    warnings += [
        f"{roles} can create objects in schema {schema}; only its owner and superusers should, "
        "since an object planted there can shadow one the application or qbo-sync uses; "
        f"fix: REVOKE CREATE ON SCHEMA {schema} FROM {grantees};"
        for schema, roles, grantees in conn.execute(OPEN_SCHEMAS_SQL).fetchall()
    ]
    warnings += [
        f"{owner} owns table {table}, so its triggers and rules run with the rights of whoever "
        f"writes it, the sync included ({installer[0]}); "
        f"fix: ALTER TABLE {table} OWNER TO {installer[0]};"
        for table, owner in conn.execute(
            TABLE_OWNERS_SQL, {"tables": list(APPLICATION_TABLES)}
        ).fetchall()
    ]
    return warnings


def _owned_schema_warning(schema: str, owner: str, through: bool, installer: str) -> str:
    how = " (as the database owner, through pg_database_owner)" if through else ""
    return (
        f"{owner} owns schema {schema}{how}, so it can drop qbo-sync's tables there and put its "
        f"own in their place, which qbo-sync's jobs would then use as {installer}; "
        f"fix: ALTER SCHEMA {schema} OWNER TO {installer};"
    )
