-- Local change tracking. A row needs a push when qbo_local_version > qbo_synced_version.
-- * The application's writes to a synced field move qbo_local_version.
-- * Writes to other columns (totals recomputed by the application's own triggers, updated_at,
--   the QBO bookkeeping columns) do not: each trigger names the fields it watches.
-- * Writes the sync makes (qbo_sync.applying_remote() is on) never mark a row: no echo.

-- True when any of `fields` differs between the two row images.
CREATE OR REPLACE FUNCTION qbo_sync.fields_changed(old_row jsonb, new_row jsonb, fields text[])
RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT EXISTS (SELECT FROM unnest(fields) AS f WHERE old_row -> f IS DISTINCT FROM new_row -> f) $$;

CREATE OR REPLACE FUNCTION qbo_sync.track_local_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF qbo_sync.applying_remote() THEN
        IF TG_OP = 'INSERT' THEN
            NEW.qbo_synced_version := NEW.qbo_local_version;
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' THEN
        NEW.qbo_local_version := greatest(NEW.qbo_local_version, NEW.qbo_synced_version + 1);
        RETURN NEW;
    END IF;
    IF NEW.qbo_local_version IS DISTINCT FROM OLD.qbo_local_version THEN
        RETURN NEW;  -- an explicit bump (a line of this invoice changed)
    END IF;
    IF qbo_sync.fields_changed(to_jsonb(OLD), to_jsonb(NEW), TG_ARGV) THEN
        NEW.qbo_local_version := OLD.qbo_local_version + 1;
        NEW.qbo_sync_status := 'pending';
    END IF;
    RETURN NEW;
END
$$;

-- A change to a document's lines is a change to the document (an invoice's lines, say).
-- TG_ARGV: the document table, the line's column naming its document, then the watched columns.
CREATE OR REPLACE FUNCTION qbo_sync.track_line_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parent_column text := TG_ARGV[1];
    old_parent uuid;
    new_parent uuid;
BEGIN
    IF qbo_sync.applying_remote() THEN
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_parent := (to_jsonb(OLD) ->> parent_column)::uuid;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_parent := (to_jsonb(NEW) ->> parent_column)::uuid;
    END IF;
    IF TG_OP <> 'UPDATE'
       OR qbo_sync.fields_changed(to_jsonb(OLD), to_jsonb(NEW), TG_ARGV[2:cardinality(TG_ARGV) - 1]) THEN
        EXECUTE format('UPDATE public.%I AS d
                           SET qbo_local_version = d.qbo_local_version + 1, qbo_sync_status = ''pending''
                         WHERE d.id IN ($1, $2)', TG_ARGV[0])
          USING old_parent, new_parent;
    END IF;
    RETURN NULL;
END
$$;

-- Rows deleted by the application after they reached QBO are remembered for the push.
-- SECURITY DEFINER: the application role may delete its rows but must not write
-- qbo_sync.local_deletion itself (a deletion recorded for another organization would delete that
-- organization's object in QBO); the trigger records exactly the row being deleted.
CREATE OR REPLACE FUNCTION qbo_sync.track_local_deletion()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF OLD.qbo_id IS NULL OR qbo_sync.applying_remote() THEN
        RETURN NULL;
    END IF;
    INSERT INTO qbo_sync.local_deletion (organization_id, entity, qbo_id, qbo_sync_token)
    VALUES (OLD.organization_id, TG_ARGV[0], OLD.qbo_id, OLD.qbo_sync_token)
    ON CONFLICT (organization_id, entity, qbo_id)
    DO UPDATE SET qbo_sync_token = EXCLUDED.qbo_sync_token, deleted_at = now(), pushed_at = NULL;
    RETURN NULL;
END
$$;

-- The triggers on the application tables, with the watched columns from the registry.
DO $$
DECLARE
    e qbo_sync.entity;
BEGIN
    FOR e IN SELECT * FROM qbo_sync.entity ORDER BY dependency_order, entity LOOP
        -- Not fired for the sync's own writes of rows already marked synced (apply_pulled inserts
        -- pulled rows with both versions at 1, so a full pull runs no trigger at all); the sync's
        -- other inserts still get their synced version from it.
        EXECUTE format('CREATE OR REPLACE TRIGGER qbo_track_local_change '
                       'BEFORE INSERT OR UPDATE ON public.%I FOR EACH ROW '
                       'WHEN (pg_catalog.current_setting(''qbo_sync.applying_remote'', true) IS DISTINCT FROM ''on'' '
                       'OR NEW.qbo_synced_version < NEW.qbo_local_version) '
                       'EXECUTE FUNCTION qbo_sync.track_local_change(%s)',
                       e.app_table,
                       (SELECT string_agg(quote_literal(c), ', ') FROM unnest(e.synced_columns) AS c));
        -- The AFTER triggers are not even queued for the sync's own writes (a pull of 100,000
        -- invoice lines queued as many trigger events only for each to return at once). The
        -- condition is bound when the trigger is made: nothing in it is looked up at run time.
        EXECUTE format('CREATE OR REPLACE TRIGGER qbo_track_local_deletion '
                       'AFTER DELETE ON public.%I FOR EACH ROW '
                       'WHEN (pg_catalog.current_setting(''qbo_sync.applying_remote'', true) IS DISTINCT FROM ''on'') '
                       'EXECUTE FUNCTION qbo_sync.track_local_deletion(%L)',
                       e.app_table, e.entity);
        IF e.line_table IS NOT NULL THEN
            EXECUTE format('CREATE OR REPLACE TRIGGER qbo_track_line_change '
                           'AFTER INSERT OR UPDATE OR DELETE ON public.%I FOR EACH ROW '
                           'WHEN (pg_catalog.current_setting(''qbo_sync.applying_remote'', true) IS DISTINCT FROM ''on'') '
                           'EXECUTE FUNCTION qbo_sync.track_line_change(%L, %L, %s)',
                           e.line_table, e.app_table, e.line_parent_column,
                           (SELECT string_agg(quote_literal(c), ', ')
                              FROM unnest(e.line_synced_columns) AS c));
        END IF;
    END LOOP;
END
$$;
-- Before 0.2 the line trigger had the invoice tables written into it.
DROP TRIGGER IF EXISTS qbo_track_invoice_line_change ON public.invoice_line_item;
DROP FUNCTION IF EXISTS qbo_sync.track_invoice_line_change();

-- Deleting an organization removes its queue, history, webhook keys, cursors and conflicts (those
-- tables do not reference organizations by foreign key: see migration 004). SECURITY DEFINER:
-- the application deletes its organization but has no write access to those tables.
CREATE OR REPLACE FUNCTION qbo_sync.forget_organization()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
BEGIN
    PERFORM qbo_sync.lock_own_relations();
    DELETE FROM public.qbo_sync_queue AS q WHERE q.organization_id = OLD.id;
    DELETE FROM public.qbo_sync_history AS h WHERE h.organization_id = OLD.id;
    DELETE FROM public.qbo_webhook_processed AS p WHERE p.organization_id = OLD.id;
    DELETE FROM public.qbo_sync_cursor AS c WHERE c.organization_id = OLD.id;
    DELETE FROM public.qbo_sync_conflict AS c WHERE c.organization_id = OLD.id;
    DELETE FROM public.qbo_sync_drift AS d WHERE d.organization_id = OLD.id;
    DELETE FROM qbo_sync.organization_lock AS l WHERE l.organization_id = OLD.id;
    DELETE FROM qbo_sync.pull_pass_seen AS s WHERE s.organization_id = OLD.id;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER qbo_forget_organization
    AFTER DELETE ON public.organizations
    FOR EACH ROW EXECUTE FUNCTION qbo_sync.forget_organization();

-- For the rest of the current transaction, application rows written count as the sync's own
-- writes (pulled changes, push bookkeeping), not as local changes.
CREATE OR REPLACE FUNCTION qbo_sync.begin_applying_remote()
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT set_config('qbo_sync.applying_remote', 'on', true); $$;
