-- The in-database Python package: its modules are stored in qbo_sync.python_module by the
-- installer (same transaction and version as the schema) and imported from there by a
-- sys.meta_path finder set up once per backend. PL/Python bodies call qbo_sync.python_setup()
-- and then import qbo_sync_db, passing plpy in explicitly.

CREATE OR REPLACE FUNCTION qbo_sync.python_setup()
RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
import sys
import importlib.abc
import importlib.util

installed = plpy.execute("SELECT version FROM qbo_sync.installation")[0]["version"]
finder = GD.get("qbo_sync_finder")
if finder is not None and finder.version == installed:
    return installed

# First use in this backend, or the code was upgraded: forget the old modules and finder.
for name in [m for m in sys.modules if m == "qbo_sync_db" or m.startswith("qbo_sync_db.")]:
    del sys.modules[name]
if finder is not None and finder in sys.meta_path:
    sys.meta_path.remove(finder)

rows = plpy.execute("SELECT name, source, is_package, version FROM qbo_sync.python_module")
stale = [r["name"] for r in rows if r["version"] != installed]
if stale or not rows:
    plpy.error("qbo-sync Python modules do not match the installed schema version %s" % installed,
               hint="run qbo-sync install again")


class TableFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, version, modules):
        self.version = version
        self.modules = modules

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.modules:
            return None
        is_package = self.modules[fullname][1]
        return importlib.util.spec_from_loader(fullname, self, is_package=is_package)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        source, is_package = self.modules[module.__name__]
        if is_package:
            module.__path__ = []
        code = compile(source, "<qbo_sync_db:%s>" % module.__name__, "exec")
        exec(code, module.__dict__)


finder = TableFinder(installed, {r["name"]: (r["source"], r["is_package"]) for r in rows})
sys.meta_path.insert(0, finder)
GD["qbo_sync_finder"] = finder
import qbo_sync_db
if qbo_sync_db.__version__ != installed:
    plpy.error("qbo_sync_db %s does not match schema version %s" % (qbo_sync_db.__version__, installed))
return installed
$$;

-- A secret from the server's environment or the secrets file named by qbo_sync.secrets_file.
-- Only the owner may call it.
CREATE OR REPLACE FUNCTION qbo_sync.secret(secret_name text)
RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT qbo_sync.python_setup()")
from qbo_sync_db import secrets
return secrets.get_secret(plpy, secret_name)
$$;

CREATE OR REPLACE FUNCTION qbo_sync.encrypt_token(token text)
RETURNS bytea
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN token IS NULL THEN NULL
                ELSE public.pgp_sym_encrypt(token, qbo_sync.secret('QBO_SYNC_TOKEN_KEY'),
                                            'cipher-algo=aes256')
           END
$$;

CREATE OR REPLACE FUNCTION qbo_sync.decrypt_token(encrypted bytea)
RETURNS text
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN encrypted IS NULL THEN NULL
                ELSE public.pgp_sym_decrypt(encrypted, qbo_sync.secret('QBO_SYNC_TOKEN_KEY'))
           END
$$;
