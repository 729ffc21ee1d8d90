-- Monitoring views.

-- What a person must do about a connection's tokens, or NULL: Intuit's refresh tokens expire for
-- good 5 years after the first grant, and then only connecting again helps.
CREATE OR REPLACE FUNCTION qbo_sync.token_warning(is_active boolean, hard_expires_at timestamptz)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN is_active AND hard_expires_at < now() + make_interval(
                 days => qbo_sync.setting_numeric('token.hard_expiry_warning_days')::integer)
        THEN format('the refresh token expires for good on %s: reconnect the organization to QuickBooks before then',
                    to_char(hard_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'))
    END
$$;

CREATE OR REPLACE VIEW public.qbo_sync_status WITH (security_invoker = true) AS
SELECT c.organization_id,
       o.name AS organization_name,
       c.realm_id,
       c.company_name,
       c.environment,
       c.is_active,
       c.inactive_reason,
       c.qbo_token_expires_at,
       c.qbo_refresh_token_expires_at,
       CASE
           WHEN c.qbo_token_expires_at IS NULL OR c.qbo_token_expires_at <= now() THEN 'expired'
           WHEN c.qbo_token_expires_at <= now() + make_interval(
                    secs => qbo_sync.setting_numeric('token.expiring_soon_seconds')::double precision)
               THEN 'expiring_soon'
           ELSE 'valid'
       END AS token_status,
       c.last_refreshed_at,
       coalesce(q.pending_jobs, 0) AS pending_jobs,
       coalesce(q.processing_jobs, 0) AS processing_jobs,
       coalesce(q.failed_jobs, 0) AS failed_jobs,
       h.last_successful_sync_at,
       h.last_sync_at,
       h.last_sync_status,
       c.qbo_refresh_token_hard_expires_at AS reconnect_by,
       qbo_sync.token_warning(c.is_active, c.qbo_refresh_token_hard_expires_at) AS token_warning
  FROM public.qbo_connection AS c
  JOIN public.organizations AS o ON o.id = c.organization_id
  LEFT JOIN LATERAL (
      SELECT count(*) FILTER (WHERE sq.status = 'pending') AS pending_jobs,
             count(*) FILTER (WHERE sq.status = 'processing') AS processing_jobs,
             count(*) FILTER (WHERE sq.status = 'failed') AS failed_jobs
        FROM public.qbo_sync_queue AS sq
       WHERE sq.organization_id = c.organization_id
         AND sq.status IN ('pending', 'processing', 'failed')
  ) AS q ON true
  LEFT JOIN LATERAL (
      SELECT max(sh.completed_at) FILTER (WHERE sh.status = 'completed') AS last_successful_sync_at,
             max(sh.completed_at) AS last_sync_at,
             (array_agg(sh.status ORDER BY sh.completed_at DESC NULLS LAST))[1] AS last_sync_status
        FROM public.qbo_sync_history AS sh
       WHERE sh.organization_id = c.organization_id
  ) AS h ON true;

COMMENT ON VIEW public.qbo_sync_status IS
    'Per organization: QuickBooks connection, token status (valid/expiring_soon/expired), queue counts, last sync';

-- Applied migrations, under the name the deployment guide's "Check 1" queries. Created in public
-- only when the application has no relation of that name.
CREATE OR REPLACE VIEW qbo_sync.migrations AS
SELECT m.name, m.checksum, m.applied_at AS created_at, m.applied_by_version AS version
  FROM qbo_sync.migration AS m;

DO $$
BEGIN
    IF to_regclass('public.migrations') IS NULL
       OR obj_description(to_regclass('public.migrations'), 'pg_class') = 'qbo-sync migrations' THEN
        CREATE OR REPLACE VIEW public.migrations AS SELECT * FROM qbo_sync.migrations;
        COMMENT ON VIEW public.migrations IS 'qbo-sync migrations';
    END IF;
END
$$;
