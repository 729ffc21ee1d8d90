-- Connecting an organization to QuickBooks (plpython/qbo_sync_db/oauth.py does the work):
-- qbo_oauth_initiate hands out the authorization URL, qbo_oauth_callback completes it (the
-- listener calls it from GET /oauth/callback), qbo_sync.disconnect revokes and deactivates, and
-- qbo_sync.create_connected_organization does it all in one call against the simulator.
-- SECURITY DEFINER where the application or the listener calls them: they act for an
-- organization only as qbo_sync.may_act_for allows, and only the owner may point a connection
-- at a simulator URL.

CREATE OR REPLACE FUNCTION public.qbo_oauth_initiate(
    organization_id uuid,
    redirect_uri text,
    environment text DEFAULT 'production',
    api_base_url text DEFAULT NULL
)
RETURNS text
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $$
if not SD.get("qbo_sync_ready"):
    plpy.execute("SELECT qbo_sync.python_loader()")
    SD["qbo_sync_ready"] = GD["qbo_sync_load"](plpy) is not None
from qbo_sync_db import oauth
plpy.execute("SELECT qbo_sync.lock_own_relations(ARRAY['organizations'])")
check = plpy.prepare(
    "SELECT qbo_sync.may_act_for($1) AND EXISTS (SELECT FROM public.organizations AS o WHERE o.id = $1) AS ok,"
    " qbo_sync.caller_is_operator() AS operator", ["uuid"])
row = plpy.execute(check, [organization_id])[0]
if not row["ok"]:
    plpy.error("organization %s does not exist" % organization_id, sqlstate="P0002")
if (api_base_url is not None or environment == "simulator") and not row["operator"]:
    plpy.error("only qbo-sync's owner may connect an organization to a simulator URL", sqlstate="42501")
return oauth.initiate(plpy, organization_id, redirect_uri, environment or "production", api_base_url)
$$;

CREATE OR REPLACE FUNCTION public.qbo_oauth_callback(code text, state text, realm_id text)
RETURNS uuid
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
if not SD.get("qbo_sync_ready"):
    plpy.execute("SELECT qbo_sync.python_loader()")
    SD["qbo_sync_ready"] = GD["qbo_sync_load"](plpy) is not None
from qbo_sync_db import oauth
plpy.execute("SELECT qbo_sync.lock_own_relations()")
return oauth.callback(plpy, code, state, realm_id)
$$;

CREATE OR REPLACE FUNCTION qbo_sync.disconnect(organization_id uuid, reason text DEFAULT 'disconnected on request')
RETURNS jsonb
LANGUAGE plpython3u
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
if not SD.get("qbo_sync_ready"):
    plpy.execute("SELECT qbo_sync.python_loader()")
    SD["qbo_sync_ready"] = GD["qbo_sync_load"](plpy) is not None
import json
from qbo_sync_db import oauth
plpy.execute("SELECT qbo_sync.lock_own_relations()")
allowed = plpy.execute(plpy.prepare("SELECT qbo_sync.may_act_for($1) AS ok", ["uuid"]), [organization_id])
if not allowed[0]["ok"]:
    plpy.error("organization %s has no QuickBooks connection" % organization_id, sqlstate="P0002")
return json.dumps(oauth.disconnect(plpy, organization_id, (reason or "disconnected on request")[:500]))
$$;

-- Owner only: create an organization and connect it in one call (scripts, the demo). Completes by
-- itself against the simulator, which consents at once; a real company needs a person: use
-- qbo_oauth_initiate and the listener's callback.
CREATE OR REPLACE FUNCTION qbo_sync.create_connected_organization(
    name text,
    api_base_url text,
    redirect_uri text DEFAULT 'http://localhost/oauth/callback'
)
RETURNS uuid
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
if not SD.get("qbo_sync_ready"):
    plpy.execute("SELECT qbo_sync.python_loader()")
    SD["qbo_sync_ready"] = GD["qbo_sync_load"](plpy) is not None
from qbo_sync_db import oauth
from qbo_sync_db.errors import QboSyncError, raise_error
org = plpy.execute(plpy.prepare(
    "INSERT INTO public.organizations (name) VALUES ($1) RETURNING id", ["text"]), [name])[0]["id"]
url = plpy.execute(plpy.prepare(
    "SELECT public.qbo_oauth_initiate($1, $2, 'simulator', $3) AS url", ["uuid", "text", "text"]),
    [org, redirect_uri, api_base_url])[0]["url"]
try:
    code, state, realm_id = oauth.parse_redirect(oauth.follow_consent(url))
except QboSyncError as exc:
    raise_error(plpy, exc)
return oauth.callback(plpy, code, state, realm_id)
$$;
