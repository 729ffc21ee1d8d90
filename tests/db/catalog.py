"""A snapshot of everything qbo-sync puts in a database, for comparing two installs."""

from __future__ import annotations

import psycopg

OURS = """(n.nspname = 'qbo_sync' OR (n.nspname = 'public' AND ({name} LIKE 'qbo%%' OR {name} IN (
    'trigger_qbo_sync', 'organizations', 'customer_profile', 'item_record', 'invoice_record',
    'invoice_line_item', 'invoice_payment', 'migrations'))))"""

QUERIES = {
    "relations": f"""
        SELECT n.nspname, c.relname, c.relkind, c.reloptions, c.relrowsecurity, c.relacl::text
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE {OURS.format(name="c.relname")} AND c.relkind IN ('r', 'v', 'm', 'S', 'p')""",
    "indexes": f"""
        SELECT n.nspname, c.relname, pg_get_indexdef(c.oid)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_index i ON i.indexrelid = c.oid
          JOIN pg_class t ON t.oid = i.indrelid
         WHERE {OURS.format(name="t.relname")}""",
    "columns": f"""
        SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attacl::text, a.attidentity, a.attgenerated
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v')
           AND {OURS.format(name="c.relname")}""",
    "constraints": f"""
        SELECT n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid)
          FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE {OURS.format(name="c.relname")}""",
    "functions": f"""
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prokind,
               md5(pg_get_functiondef(p.oid)), p.proacl::text
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE {OURS.format(name="p.proname")}""",
    "triggers": f"""
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid)
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT t.tgisinternal AND {OURS.format(name="c.relname")}""",
    "policies": """
        SELECT schemaname, tablename, policyname, cmd, roles::text, qual, with_check
          FROM pg_policies WHERE schemaname IN ('public', 'qbo_sync')""",
    "views": f"""
        SELECT n.nspname, c.relname, pg_get_viewdef(c.oid)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'v' AND {OURS.format(name="c.relname")}""",
    "types": """
        SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)::text
          FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
         WHERE t.typname LIKE 'qbo%' GROUP BY t.typname""",
    "extensions": "SELECT extname, extversion FROM pg_extension",
    "schemas": "SELECT nspname, nspacl::text FROM pg_namespace WHERE nspname = 'qbo_sync'",
    "settings": "SELECT key, value FROM qbo_sync.settings",
    "migrations": "SELECT name, checksum FROM qbo_sync.migration",
    "python": "SELECT name, md5(source), is_package, version FROM qbo_sync.python_module",
    "installation": "SELECT version FROM qbo_sync.installation",
}

CRON = "SELECT jobname, schedule, command, database, active FROM cron.job"


def snapshot(dsn: str) -> dict[str, list[tuple]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        has_schema = conn.execute("SELECT to_regnamespace('qbo_sync') IS NOT NULL").fetchone()[0]
        result = {}
        for name, query in QUERIES.items():
            if not has_schema and name in ("settings", "migrations", "python", "installation"):
                result[name] = []
                continue
            result[name] = sorted(conn.execute(query).fetchall(), key=repr)
        if conn.execute("SELECT to_regclass('cron.job') IS NOT NULL").fetchone()[0]:
            result["cron"] = sorted(conn.execute(CRON).fetchall(), key=repr)
        return result
