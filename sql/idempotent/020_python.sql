-- The in-database Python package: its modules are stored in qbo_sync.python_module by the
-- installer (same transaction and version as the schema) and imported from there by a
-- sys.meta_path finder set up once per backend. A PL/Python body checks the installed code once
-- per backend and function (SD is emptied when the function's catalog row changes, which every
-- install and every change of the stored modules does), then imports from qbo_sync_db, passing
-- plpy in explicitly:
--     if not SD.get("qbo_sync_ready"):
--         plpy.execute("SELECT qbo_sync.python_loader()")
--         SD["qbo_sync_ready"] = GD["qbo_sync_load"](plpy) is not None
--     from qbo_sync_db import secrets
-- bench/bench_plpython.py measures what this costs per call.

-- Leaves the loader in GD; called whenever a function's SD is empty (once per backend and function
-- after each install), so a backend also picks up a changed loader. The loader's state (the
-- finder it installed) carries over. It never fails: the checks run when the loader is called,
-- from the caller's own Python, so their errors reach the user as they are.
CREATE OR REPLACE FUNCTION qbo_sync.python_loader()
RETURNS void
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
import sys
import importlib.abc
import importlib.util

# A call of the loader costs one prepared query: the installed version and the hash of the
# installed sources. When either changed since this backend imported the package (an upgrade, or
# a re-install of changed code under the same version), the old modules are dropped and the new
# ones imported.
state = GD.setdefault("qbo_sync_load_state", {"plan": None, "finder": None})

class TableFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, modules):
        self.modules = modules

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.modules:
            return None
        return importlib.util.spec_from_loader(
            fullname, self, is_package=self.modules[fullname][1])

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        source, is_package = self.modules[module.__name__]
        if is_package:
            module.__path__ = []
        exec(compile(source, "<qbo_sync_db:%s>" % module.__name__, "exec"), module.__dict__)

def load(plpy):
    if state["plan"] is None:
        state["plan"] = plpy.prepare("SELECT version, code_hash FROM qbo_sync.installation")
    rows = plpy.execute(state["plan"])
    if not rows:
        plpy.error("qbo-sync is not installed in this database", sqlstate="QS001",
                   hint="run qbo-sync install")
    version, code_hash = rows[0]["version"], rows[0]["code_hash"]
    finder = state["finder"]
    if finder is not None and finder.key == (version, code_hash):
        return sys.modules["qbo_sync_db"]
    for name in [m for m in sys.modules if m == "qbo_sync_db" or m.startswith("qbo_sync_db.")]:
        del sys.modules[name]
    if finder is not None and finder in sys.meta_path:
        sys.meta_path.remove(finder)
    state["finder"] = None
    modules = plpy.execute("SELECT name, source, is_package, version FROM qbo_sync.python_module")
    if not modules or any(m["version"] != version for m in modules):
        plpy.error("qbo-sync Python modules do not match the installed schema version %s" % version,
                   sqlstate="QS001", hint="run qbo-sync install again")
    finder = TableFinder({m["name"]: (m["source"], m["is_package"]) for m in modules})
    finder.key = (version, code_hash)
    sys.meta_path.insert(0, finder)
    import qbo_sync_db
    if qbo_sync_db.__version__ != version:
        sys.meta_path.remove(finder)
        plpy.error("qbo_sync_db %s does not match schema version %s"
                   % (qbo_sync_db.__version__, version), sqlstate="QS001",
                   hint="run qbo-sync install again")
    state["finder"] = finder
    return qbo_sync_db

GD["qbo_sync_load"] = load
$$;

-- Keeps the hash of the stored modules current, and makes every backend notice new code: a
-- PL/Python function whose catalog row changed is compiled again, with an empty SD (the
-- procedures load the package on every call and need no such touch; ALTER FUNCTION refuses them).
CREATE OR REPLACE FUNCTION qbo_sync.refresh_code_hash()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f regprocedure;
BEGIN
    UPDATE qbo_sync.installation
       SET code_hash = (SELECT md5(string_agg(m.name || ':' || m.version || ':' || md5(m.source), ','
                                              ORDER BY m.name))
                          FROM qbo_sync.python_module AS m);
    FOR f IN
        SELECT p.oid::regprocedure
          FROM pg_proc AS p
          JOIN pg_language AS l ON l.oid = p.prolang
         WHERE p.pronamespace = 'qbo_sync'::regnamespace AND l.lanname = 'plpython3u'
           AND p.prokind = 'f'
    LOOP
        EXECUTE format('ALTER FUNCTION %s COST %s', f, (SELECT p.procost FROM pg_proc AS p WHERE p.oid = f));
    END LOOP;
    RETURN NULL;
END
$$;

-- Imports the in-database package (or notices it changed) and returns its version.
CREATE OR REPLACE FUNCTION qbo_sync.python_setup()
RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT qbo_sync.python_loader()")
return GD["qbo_sync_load"](plpy).__version__
$$;

-- A secret from the server's environment or the secrets file named by qbo_sync.secrets_file.
-- Only the owner may call it.
CREATE OR REPLACE FUNCTION qbo_sync.secret(secret_name text)
RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not SD.get("qbo_sync_ready"):
    plpy.execute("SELECT qbo_sync.python_loader()")
    SD["qbo_sync_ready"] = GD["qbo_sync_load"](plpy) is not None
from qbo_sync_db import secrets
return secrets.get_secret(plpy, secret_name)
$$;

-- Tokens at rest: pgcrypto's pgp_sym_encrypt with the key from the secrets. pgcrypto is called
-- in the schema it is installed in (public here, `extensions` on Supabase), fixed at install time.
DO $do$
DECLARE
    crypto_schema name := (SELECT n.nspname FROM pg_extension AS x
                             JOIN pg_namespace AS n ON n.oid = x.extnamespace
                            WHERE x.extname = 'pgcrypto');
BEGIN
    IF crypto_schema IS NULL THEN
        RAISE EXCEPTION 'qbo-sync needs the pgcrypto extension'
            USING ERRCODE = 'undefined_object', HINT = 'CREATE EXTENSION pgcrypto (in any schema)';
    END IF;
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION qbo_sync.encrypt_token(token text)
        RETURNS bytea
        LANGUAGE sql VOLATILE
        SET search_path = pg_catalog, pg_temp
        AS $$
            SELECT CASE WHEN token IS NULL THEN NULL
                        ELSE %1$I.pgp_sym_encrypt(token, qbo_sync.secret('QBO_SYNC_TOKEN_KEY'),
                                                  'cipher-algo=aes256')
                   END
        $$ $f$, crypto_schema);
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION qbo_sync.decrypt_token(encrypted bytea)
        RETURNS text
        LANGUAGE sql VOLATILE
        SET search_path = pg_catalog, pg_temp
        AS $$
            SELECT CASE WHEN encrypted IS NULL THEN NULL
                        ELSE %1$I.pgp_sym_decrypt(encrypted, qbo_sync.secret('QBO_SYNC_TOKEN_KEY'))
                   END
        $$ $f$, crypto_schema);
END
$do$;
