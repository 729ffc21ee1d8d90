"""What the installing role must be allowed to do, and schemas that are too open.

qbo-sync creates PL/Python functions, and plpython3u is an untrusted language: PostgreSQL lets
only superusers create it and functions written in it. So the installer runs as a superuser;
`missing_privileges` says so, before anything changes, when it does not. After an installation,
`open_schema_warnings` names the roles that can create objects in the schemas qbo-sync uses.
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


#: Schemas qbo-sync uses (public, qbo_sync, pgcrypto's) where roles other than superusers, the
#: installing role and the schema's owner (or its members) may create objects.
OPEN_SCHEMAS_SQL = """
SELECT n.oid::regnamespace::text,
       string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                  ', ' ORDER BY a.grantee <> 0, a.grantee::regrole::text)
  FROM pg_namespace AS n
 CROSS JOIN LATERAL aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) AS a
  LEFT JOIN pg_roles AS r ON r.oid = a.grantee
 WHERE (n.nspname IN ('public', 'qbo_sync')
        OR n.oid = (SELECT extnamespace FROM pg_extension WHERE extname = 'pgcrypto'))
   AND a.privilege_type = 'CREATE'
   AND (a.grantee = 0
        OR NOT (r.rolsuper OR r.rolname = current_user
                OR pg_has_role(a.grantee, n.nspowner, 'MEMBER')))
 GROUP BY n.oid
 ORDER BY 1
"""


def open_schema_warnings(conn: psycopg.Connection) -> list[str]:
    """One warning per schema qbo-sync uses in which other roles can create objects."""
    return [
        f"{roles} can create objects in schema {schema}; only its owner and superusers should, "
        "since an object planted there can shadow one the application or qbo-sync uses; "
        f"fix: REVOKE CREATE ON SCHEMA {schema} FROM {roles};"
        for schema, roles in conn.execute(OPEN_SCHEMAS_SQL).fetchall()
    ]
