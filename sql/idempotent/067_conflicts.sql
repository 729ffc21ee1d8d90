-- Conflicts: the three-way merge of a row changed both here and in QBO (plpython/qbo_sync_db/
-- conflicts.py decides, per field; these functions read and write). The base is the row's
-- qbo_raw, the QBO object both sides last agreed on. A merged row takes QBO's object as its new
-- base (SyncToken, qbo_raw, timestamps) and is pending only when the merged values differ from
-- QBO's; a row held for a person (policy 'hold') is 'conflict' and waits for
-- public.qbo_sync_resolve_conflict. Every field changed on both sides to different values is
-- recorded in public.qbo_sync_conflict with both values, the base and what was done.
-- Writes are the sync's own (qbo_sync.begin_applying_remote): nothing here marks a row for push
-- through change tracking; whether a row is pending is set explicitly.

-- An organization's conflict policy and per-field owners (the defaults without a settings row).
CREATE OR REPLACE FUNCTION qbo_sync.conflict_settings(organization_id uuid)
RETURNS TABLE (policy text, field_owners jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(s.conflict_policy, 'qbo_wins'), coalesce(s.field_owners, '{}')
      FROM (SELECT) AS one
      LEFT JOIN qbo_sync.organization_settings AS s ON s.organization_id = conflict_settings.organization_id
$$;

-- What a merge needs of the rows of `entity` with these QBO ids or these local ids (one statement
-- for a page): every column as JSON, "<column>_qbo_id" for each reference in `refs` (column →
-- entity), an invoice's lines in order (each with its item's QBO Id as "item_id_qbo_id"), and
-- "held_conflict_id", the held merge conflict the row waits on (NULL when none; a conflict about
-- another QBO object, such as a name QBO says is taken, is the push's and not a merge's).
CREATE OR REPLACE FUNCTION qbo_sync.conflict_rows(
    organization_id uuid, entity text, qbo_ids text[], row_ids uuid[], refs jsonb DEFAULT '{}'
)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target qbo_sync.entity := qbo_sync.entity_row(entity);
    ref_column text;
    ref_entity text;
    extra text := '';
BEGIN
    PERFORM qbo_sync.check_business_columns(target.app_table, ARRAY(SELECT jsonb_object_keys(refs)));
    FOR ref_column, ref_entity IN SELECT key, value FROM jsonb_each_text(refs) LOOP
        extra := extra || format(
            ' || jsonb_build_object(%L, (SELECT r.qbo_id FROM public.%I AS r WHERE r.id = t.%I))',
            ref_column || '_qbo_id', (qbo_sync.entity_row(ref_entity)).app_table, ref_column);
    END LOOP;
    IF target.line_table = 'invoice_line_item' THEN
        extra := extra || $lines$ || jsonb_build_object('lines', coalesce((
            SELECT jsonb_agg(to_jsonb(l) || jsonb_build_object('item_id_qbo_id', it.qbo_id)
                             ORDER BY l.line_number, l.id)
              FROM public.invoice_line_item AS l
              LEFT JOIN public.item_record AS it ON it.id = l.item_id
             WHERE l.invoice_id = t.id), '[]'))$lines$;
    END IF;
    RETURN QUERY EXECUTE format(
        $sql$SELECT to_jsonb(t) %2$s || jsonb_build_object('held_conflict_id', (
                    SELECT c.id FROM public.qbo_sync_conflict AS c
                     WHERE c.organization_id = t.organization_id AND c.entity = $4
                       AND c.local_id = t.id AND c.qbo_id = t.qbo_id AND c.status = 'held'
                     ORDER BY c.detected_at LIMIT 1))
               FROM public.%1$I AS t
              WHERE t.organization_id = $1 AND (t.qbo_id = ANY ($2) OR t.id = ANY ($3))
              ORDER BY t.id$sql$, target.app_table, extra)
    USING organization_id, coalesce(qbo_ids, '{}'), coalesce(row_ids, '{}'), entity;
END
$$;

-- Apply merge outcomes to rows of `entity` (conflicts.py builds them), each only if the row's
-- qbo_local_version is still the one read (a local change made meanwhile leaves the row alone:
-- it is merged again next time). `changes` is a JSON array of objects:
--   id, version: the row and the qbo_local_version read;
--   status: 'synced' (nothing to push), 'pending' (the merged values differ from QBO's: the
--     next push sends them with QBO's SyncToken) or 'conflict' (held for a person: not pending);
--   columns: business columns to write from `values`; refs: {column: entity} references to set
--     from values."<column>_qbo_id";
--   values: the values (as mapping.from_qbo makes them) and, when new_base, QBO's qbo_sync_token,
--     qbo_created_at, qbo_updated_at and qbo_raw, stored as the row's new base;
--   lines: an invoice's lines to take from QBO (qbo_sync.apply_pulled_lines), or null;
--   conflict: the conflict to record (fields, local_values, remote_values, base_values, policy,
--     status, resolution, resolved_values, detected_by), or null.
-- Returns {"applied": [ids], "stale": [ids]}.
CREATE OR REPLACE FUNCTION qbo_sync.apply_merges(organization_id uuid, entity text, changes jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target qbo_sync.entity := qbo_sync.entity_row(entity);
    change jsonb;
    conflict jsonb;
    sets text;
    ref_column text;
    ref_entity text;
    written_id uuid;
    written_qbo_id text;
    applied jsonb := '[]';
    stale jsonb := '[]';
BEGIN
    IF jsonb_typeof(changes) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'apply_merges needs a JSON array of changes' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM qbo_sync.begin_applying_remote();
    FOR change IN SELECT e.doc FROM jsonb_array_elements(changes) AS e(doc) LOOP
        IF change ->> 'status' IS NULL OR change ->> 'status' NOT IN ('synced', 'pending', 'conflict') THEN
            RAISE EXCEPTION 'a merge''s status is synced, pending or conflict, not %',
                  qbo_sync.quote_for_message(change ->> 'status')
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM qbo_sync.check_business_columns(
            target.app_table,
            ARRAY(SELECT jsonb_array_elements_text(coalesce(change -> 'columns', '[]')))
            || ARRAY(SELECT jsonb_object_keys(coalesce(change -> 'refs', '{}'))));
        SELECT coalesce(string_agg(format('%1$I = p.%1$I, ', c), ''), '') INTO sets
          FROM jsonb_array_elements_text(coalesce(change -> 'columns', '[]')) AS c;
        FOR ref_column, ref_entity IN SELECT key, value FROM jsonb_each_text(coalesce(change -> 'refs', '{}')) LOOP
            sets := sets || format(
                '%I = (SELECT r.id FROM public.%I AS r WHERE r.organization_id = $1 AND r.qbo_id = $4 -> ''values'' ->> %L), ',
                ref_column, (qbo_sync.entity_row(ref_entity)).app_table, ref_column || '_qbo_id');
        END LOOP;
        IF coalesce((change ->> 'new_base')::boolean, false) THEN
            sets := sets || 'qbo_sync_token = p.qbo_sync_token, qbo_created_at = p.qbo_created_at, '
                         || 'qbo_updated_at = p.qbo_updated_at, qbo_raw = $4 -> ''values'' -> ''qbo_raw'', '
                         || 'qbo_deleted_at = NULL, ';
        END IF;
        EXECUTE format(
            $sql$UPDATE public.%1$I AS t
                    SET %2$s qbo_last_synced_at = now(),
                        qbo_sync_status = $4 ->> 'status',
                        qbo_sync_error = CASE WHEN $4 ->> 'status' = 'conflict'
                            THEN 'held: changed here and in QBO in the same fields; a person decides (qbo_sync_resolve_conflict)' END,
                        qbo_sync_error_class = CASE WHEN $4 ->> 'status' = 'conflict' THEN 'conflict' END,
                        qbo_sync_error_code = NULL,
                        qbo_synced_version = CASE WHEN $4 ->> 'status' = 'pending'
                                                  THEN least(t.qbo_synced_version, t.qbo_local_version - 1)
                                                  ELSE t.qbo_local_version END,
                        updated_at = now()
                   FROM jsonb_populate_record(NULL::public.%1$I, $4 -> 'values') AS p
                  WHERE t.organization_id = $1 AND t.id = $2 AND t.qbo_local_version = $3
                 RETURNING t.id, t.qbo_id$sql$, target.app_table, sets)
        INTO written_id, written_qbo_id
        USING organization_id, (change ->> 'id')::uuid, (change ->> 'version')::bigint, change;
        IF written_id IS NULL THEN
            stale := stale || jsonb_build_array(change -> 'id');
            CONTINUE;
        END IF;
        applied := applied || jsonb_build_array(change -> 'id');
        IF jsonb_typeof(change -> 'lines') = 'array' AND written_qbo_id IS NOT NULL THEN
            PERFORM qbo_sync.apply_pulled_lines(organization_id, ARRAY[written_qbo_id], change -> 'lines');
        END IF;
        conflict := change -> 'conflict';
        IF jsonb_typeof(conflict) = 'object' THEN
            INSERT INTO public.qbo_sync_conflict
                (organization_id, entity, local_id, qbo_id, local_values, remote_values, base_values,
                 fields, policy, status, resolution, resolved_values, resolved_at, detected_by)
            VALUES (apply_merges.organization_id, apply_merges.entity, (change ->> 'id')::uuid,
                    written_qbo_id, coalesce(conflict -> 'local_values', '{}'),
                    coalesce(conflict -> 'remote_values', '{}'), coalesce(conflict -> 'base_values', '{}'),
                    ARRAY(SELECT jsonb_array_elements_text(conflict -> 'fields')),
                    conflict ->> 'policy', conflict ->> 'status', conflict ->> 'resolution',
                    -- held: the fields an owner decided already, if any (a person decides the rest)
                    CASE WHEN conflict ->> 'status' = 'resolved'
                              OR conflict -> 'resolved_values' <> '{}' THEN conflict -> 'resolved_values' END,
                    CASE WHEN conflict ->> 'status' = 'resolved' THEN now() END,
                    conflict ->> 'detected_by');
        END IF;
    END LOOP;
    RETURN jsonb_build_object('applied', applied, 'stale', stale);
END
$$;

-- QBO's newer values for rows held for a person: `updates` is a JSON array of
-- {"qbo_id", "remote": the object mapped}; each held conflict's remote values take QBO's current
-- values of its fields (the row itself waits, unchanged). Returns how many conflicts were updated.
CREATE OR REPLACE FUNCTION qbo_sync.record_held_remote(organization_id uuid, entity text, updates jsonb)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    recorded integer;
BEGIN
    UPDATE public.qbo_sync_conflict AS c
       SET remote_values = c.remote_values || (
               SELECT coalesce(jsonb_object_agg(f, coalesce(u.doc -> 'remote' -> f, 'null')), '{}')
                 FROM unnest(c.fields) AS f)
      FROM jsonb_array_elements(updates) AS u(doc)
     WHERE c.organization_id = record_held_remote.organization_id
       AND c.entity = record_held_remote.entity
       AND c.status = 'held' AND c.qbo_id = u.doc ->> 'qbo_id';
    GET DIAGNOSTICS recorded = ROW_COUNT;
    PERFORM qbo_sync.keep_conflicts_held(organization_id, entity);
    RETURN recorded;
END
$$;

-- Rows waiting on a held merge conflict (about the QBO object the row is linked to) stay
-- 'conflict' and are not pushed, even when they were edited meanwhile (the edit stays in the row:
-- the person's choice is applied to the row as it is then).
-- Run before every pull of the entity and when a 5010 finds the row held. Returns how many rows
-- were put back on hold.
CREATE OR REPLACE FUNCTION qbo_sync.keep_conflicts_held(organization_id uuid, entity text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kept integer;
BEGIN
    PERFORM qbo_sync.begin_applying_remote();
    EXECUTE format(
        $sql$UPDATE public.%I AS t
                SET qbo_synced_version = t.qbo_local_version, qbo_sync_status = 'conflict',
                    qbo_sync_error_class = 'conflict'
               FROM public.qbo_sync_conflict AS c
              WHERE c.organization_id = $1 AND c.entity = $2 AND c.status = 'held'
                AND t.organization_id = $1 AND t.id = c.local_id AND t.qbo_id = c.qbo_id
                AND (t.qbo_local_version > t.qbo_synced_version OR t.qbo_sync_status <> 'conflict')$sql$,
        (qbo_sync.entity_row(entity)).app_table)
    USING organization_id, entity;
    GET DIAGNOSTICS kept = ROW_COUNT;
    RETURN kept;
END
$$;

-- A conflict as JSON (for its resolution).
CREATE OR REPLACE FUNCTION qbo_sync.conflict_for_resolution(conflict_id uuid)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT to_jsonb(c) FROM public.qbo_sync_conflict AS c WHERE c.id = conflict_id $$;

-- A held conflict resolved by a person's choice ('qbo', 'local' or 'custom'): the values chosen,
-- who chose (the calling role) and when.
CREATE OR REPLACE FUNCTION qbo_sync.mark_conflict_resolved(conflict_id uuid, choice text, chosen jsonb)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.qbo_sync_conflict AS c
       SET status = 'resolved',
           resolution = CASE choice WHEN 'qbo' THEN 'qbo_wins' WHEN 'local' THEN 'local_wins'
                                    ELSE 'custom' END,
           resolved_values = chosen, resolved_by = qbo_sync.calling_role(), resolved_at = now()
     WHERE c.id = conflict_id
$$;

-- The row of a held conflict set by a person's choice (qbo_sync_db.conflicts.resolve): owner-only,
-- called by public.qbo_sync_resolve_conflict once it has checked the caller and locked the conflict.
CREATE OR REPLACE FUNCTION qbo_sync.resolve_conflict_values(conflict_id uuid, choice text, custom jsonb)
RETURNS jsonb
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
import json
from decimal import Decimal
plpy.execute("SELECT qbo_sync.python_loader()")
GD["qbo_sync_load"](plpy)
from qbo_sync_db import conflicts
values = json.loads(custom, parse_float=Decimal) if custom is not None else None
return json.dumps(conflicts.resolve(plpy, conflict_id, choice, values), default=str)
$$;

-- Resolve a held conflict: 'qbo' takes QBO's values of the held fields, 'local' keeps the row's,
-- 'custom' sets `values` ({"field": value} for exactly the held fields; an invoice's lines take
-- 'qbo' or 'local'). The row is then pending, and the next push sends it with the SyncToken stored
-- when the conflict was found, unless its values are QBO's (then it is synced); a QBO change made
-- since is merged by that push (5010) or the next pull. A conflict about another QBO object than
-- the row's (a create whose name QBO says is taken) takes 'local' or 'custom': the row is pending
-- again with those values, and the push tries it again. Returns what was done.
-- SECURITY DEFINER: the application may read conflicts but not write them or the sync's
-- bookkeeping; it may resolve the conflicts of the organization its session works for.
CREATE OR REPLACE FUNCTION public.qbo_sync_resolve_conflict(conflict_id uuid, choice text, "values" jsonb DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $$
DECLARE
    found public.qbo_sync_conflict;
BEGIN
    PERFORM qbo_sync.lock_own_relations(ARRAY['customer_profile', 'item_record', 'invoice_record',
                                              'invoice_line_item', 'invoice_payment']);
    SELECT c.* INTO found FROM public.qbo_sync_conflict AS c WHERE c.id = conflict_id;
    IF found.id IS NULL OR NOT qbo_sync.may_act_for(found.organization_id) THEN
        RAISE EXCEPTION 'conflict % does not exist', conflict_id USING ERRCODE = 'no_data_found';
    END IF;
    IF choice IS NULL OR choice NOT IN ('qbo', 'local', 'custom') THEN
        RAISE EXCEPTION 'choice must be qbo, local or custom, not %', qbo_sync.quote_for_message(choice)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF choice = 'custom' AND jsonb_typeof("values") IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'a custom resolution needs values: {"<field>": <value>} for the held fields %',
              found.fields
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT c.* INTO found FROM public.qbo_sync_conflict AS c
     WHERE c.organization_id = found.organization_id AND c.id = conflict_id
       FOR UPDATE;
    IF found.status <> 'held' THEN
        RAISE EXCEPTION 'conflict % is not waiting for a decision: it was resolved (%)',
              conflict_id, found.resolution
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN qbo_sync.resolve_conflict_values(conflict_id, choice,
                                            CASE WHEN choice = 'custom' THEN "values" END);
EXCEPTION WHEN lock_not_available THEN
    RAISE EXCEPTION 'conflict % or its row is busy: another session holds it', conflict_id
        USING ERRCODE = 'lock_not_available',
              HINT = 'try again in a moment (a pull or push of the row is committing)';
END
$$;

GRANT EXECUTE ON FUNCTION public.qbo_sync_resolve_conflict(uuid, text, jsonb) TO qbo_sync_app;
