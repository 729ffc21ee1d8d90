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

-- A change to an invoice's lines is a change to the invoice.
CREATE OR REPLACE FUNCTION qbo_sync.track_invoice_line_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF qbo_sync.applying_remote() THEN
        RETURN NULL;
    END IF;
    IF TG_OP <> 'UPDATE' OR qbo_sync.fields_changed(to_jsonb(OLD), to_jsonb(NEW), TG_ARGV) THEN
        UPDATE public.invoice_record AS i
           SET qbo_local_version = i.qbo_local_version + 1, qbo_sync_status = 'pending'
         WHERE i.id IN (CASE WHEN TG_OP = 'DELETE' THEN OLD.invoice_id ELSE NEW.invoice_id END,
                        CASE WHEN TG_OP = 'UPDATE' THEN OLD.invoice_id END);
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
    INSERT INTO qbo_sync.local_deletion (organization_id, entity_type, qbo_id, qbo_sync_token)
    VALUES (OLD.organization_id, TG_ARGV[0], OLD.qbo_id, OLD.qbo_sync_token)
    ON CONFLICT (organization_id, entity_type, qbo_id)
    DO UPDATE SET qbo_sync_token = EXCLUDED.qbo_sync_token, deleted_at = now(), pushed_at = NULL;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER qbo_track_local_change
    BEFORE INSERT OR UPDATE ON public.customer_profile
    FOR EACH ROW EXECUTE FUNCTION qbo_sync.track_local_change(
        'display_name', 'company_name', 'given_name', 'family_name', 'email', 'phone', 'mobile',
        'billing_address', 'shipping_address', 'notes', 'taxable', 'currency_code', 'is_active');

CREATE OR REPLACE TRIGGER qbo_track_local_change
    BEFORE INSERT OR UPDATE ON public.item_record
    FOR EACH ROW EXECUTE FUNCTION qbo_sync.track_local_change(
        'name', 'sku', 'description', 'item_type', 'unit_price', 'purchase_cost',
        'income_account_ref', 'expense_account_ref', 'taxable', 'is_active');

CREATE OR REPLACE TRIGGER qbo_track_local_change
    BEFORE INSERT OR UPDATE ON public.invoice_record
    FOR EACH ROW EXECUTE FUNCTION qbo_sync.track_local_change(
        'customer_id', 'invoice_number', 'txn_date', 'due_date', 'currency_code', 'customer_memo',
        'private_note', 'billing_email', 'billing_address', 'shipping_address', 'sales_term_ref',
        'is_voided');

CREATE OR REPLACE TRIGGER qbo_track_local_change
    BEFORE INSERT OR UPDATE ON public.invoice_payment
    FOR EACH ROW EXECUTE FUNCTION qbo_sync.track_local_change(
        'customer_id', 'invoice_id', 'amount', 'payment_date', 'payment_method_ref',
        'reference_number', 'deposit_account_ref', 'currency_code', 'private_note', 'is_voided');

CREATE OR REPLACE TRIGGER qbo_track_invoice_line_change
    AFTER INSERT OR UPDATE OR DELETE ON public.invoice_line_item
    FOR EACH ROW EXECUTE FUNCTION qbo_sync.track_invoice_line_change(
        'invoice_id', 'line_number', 'item_id', 'description', 'quantity', 'unit_price', 'amount',
        'tax_code_ref', 'service_date', 'detail_type');

CREATE OR REPLACE TRIGGER qbo_track_local_deletion
    AFTER DELETE ON public.customer_profile
    FOR EACH ROW EXECUTE FUNCTION qbo_sync.track_local_deletion('customers');
CREATE OR REPLACE TRIGGER qbo_track_local_deletion
    AFTER DELETE ON public.item_record
    FOR EACH ROW EXECUTE FUNCTION qbo_sync.track_local_deletion('items');
CREATE OR REPLACE TRIGGER qbo_track_local_deletion
    AFTER DELETE ON public.invoice_record
    FOR EACH ROW EXECUTE FUNCTION qbo_sync.track_local_deletion('invoices');
CREATE OR REPLACE TRIGGER qbo_track_local_deletion
    AFTER DELETE ON public.invoice_payment
    FOR EACH ROW EXECUTE FUNCTION qbo_sync.track_local_deletion('payments');

-- For the rest of the current transaction, application rows written count as the sync's own
-- writes (pulled changes, push bookkeeping), not as local changes.
CREATE OR REPLACE FUNCTION qbo_sync.begin_applying_remote()
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT set_config('qbo_sync.applying_remote', 'on', true); $$;
