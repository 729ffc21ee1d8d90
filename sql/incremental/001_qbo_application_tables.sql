-- Migration 001: the qbo_sync schema, settings, and the application tables with their QBO columns.
-- Frozen once released: applied once per database and recorded with its checksum.
-- Application tables are created only when absent; when the application already has them, the QBO
-- columns are added and its rows, keys and security are left as they are.

CREATE SCHEMA IF NOT EXISTS qbo_sync;
COMMENT ON SCHEMA qbo_sync IS 'qbo-sync internals: settings, installer bookkeeping, queue and sync functions';

CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE EXTENSION IF NOT EXISTS plpython3u;

-- Settings that are not secrets (retention, queue tuning). Secrets never go in a table.
CREATE TABLE qbo_sync.settings (
    key         text PRIMARY KEY,
    value       text NOT NULL,
    description text NOT NULL DEFAULT ''
);

-- Which application tables qbo-sync created (and so may secure with row-level security) and
-- which the application already had (left as they are).
CREATE TABLE qbo_sync.app_table (
    table_name          text PRIMARY KEY,
    created_by_qbo_sync boolean NOT NULL
);
INSERT INTO qbo_sync.app_table (table_name, created_by_qbo_sync)
SELECT t, to_regclass('public.' || t) IS NULL
FROM unnest(ARRAY['organizations', 'customer_profile', 'item_record', 'invoice_record',
                  'invoice_line_item', 'invoice_payment']) AS t;

CREATE TABLE IF NOT EXISTS public.organizations (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.customer_profile (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    display_name     text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.item_record (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    name             text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.invoice_record (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    customer_id      uuid REFERENCES public.customer_profile (id) ON DELETE RESTRICT,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.invoice_line_item (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    invoice_id       uuid NOT NULL REFERENCES public.invoice_record (id) ON DELETE CASCADE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.invoice_payment (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    customer_id      uuid REFERENCES public.customer_profile (id) ON DELETE RESTRICT,
    invoice_id       uuid REFERENCES public.invoice_record (id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Business columns (added when the application's table lacks them).
ALTER TABLE public.customer_profile
    ADD COLUMN IF NOT EXISTS company_name     text,
    ADD COLUMN IF NOT EXISTS given_name       text,
    ADD COLUMN IF NOT EXISTS family_name      text,
    ADD COLUMN IF NOT EXISTS email            text,
    ADD COLUMN IF NOT EXISTS phone            text,
    ADD COLUMN IF NOT EXISTS mobile           text,
    ADD COLUMN IF NOT EXISTS billing_address  jsonb,
    ADD COLUMN IF NOT EXISTS shipping_address jsonb,
    ADD COLUMN IF NOT EXISTS notes            text,
    ADD COLUMN IF NOT EXISTS taxable          boolean NOT NULL DEFAULT true,
    ADD COLUMN IF NOT EXISTS currency_code    text,
    ADD COLUMN IF NOT EXISTS balance          numeric(15, 2) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS is_active        boolean NOT NULL DEFAULT true;

ALTER TABLE public.item_record
    ADD COLUMN IF NOT EXISTS sku                 text,
    ADD COLUMN IF NOT EXISTS description         text,
    ADD COLUMN IF NOT EXISTS item_type           text NOT NULL DEFAULT 'Service',
    ADD COLUMN IF NOT EXISTS unit_price          numeric(15, 4),
    ADD COLUMN IF NOT EXISTS purchase_cost       numeric(15, 4),
    ADD COLUMN IF NOT EXISTS income_account_ref  text,
    ADD COLUMN IF NOT EXISTS expense_account_ref text,
    ADD COLUMN IF NOT EXISTS taxable             boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS qty_on_hand         numeric(15, 4),
    ADD COLUMN IF NOT EXISTS is_active           boolean NOT NULL DEFAULT true;

ALTER TABLE public.invoice_record
    ADD COLUMN IF NOT EXISTS invoice_number   text,
    ADD COLUMN IF NOT EXISTS txn_date         date NOT NULL DEFAULT current_date,
    ADD COLUMN IF NOT EXISTS due_date         date,
    ADD COLUMN IF NOT EXISTS status           text NOT NULL DEFAULT 'draft',
    ADD COLUMN IF NOT EXISTS currency_code    text,
    ADD COLUMN IF NOT EXISTS subtotal         numeric(15, 2) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS tax_total        numeric(15, 2) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS total_amount     numeric(15, 2) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS amount_paid      numeric(15, 2) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS balance_due      numeric(15, 2) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS customer_memo    text,
    ADD COLUMN IF NOT EXISTS private_note     text,
    ADD COLUMN IF NOT EXISTS billing_email    text,
    ADD COLUMN IF NOT EXISTS billing_address  jsonb,
    ADD COLUMN IF NOT EXISTS shipping_address jsonb,
    ADD COLUMN IF NOT EXISTS sales_term_ref   text,
    ADD COLUMN IF NOT EXISTS email_status     text,
    ADD COLUMN IF NOT EXISTS print_status     text,
    ADD COLUMN IF NOT EXISTS is_voided        boolean NOT NULL DEFAULT false;

ALTER TABLE public.invoice_line_item
    ADD COLUMN IF NOT EXISTS line_number  integer NOT NULL DEFAULT 1,
    ADD COLUMN IF NOT EXISTS item_id      uuid REFERENCES public.item_record (id) ON DELETE RESTRICT,
    ADD COLUMN IF NOT EXISTS description  text,
    ADD COLUMN IF NOT EXISTS quantity     numeric(15, 4) NOT NULL DEFAULT 1,
    ADD COLUMN IF NOT EXISTS unit_price   numeric(15, 4) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS amount       numeric(15, 2) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS tax_code_ref text,
    ADD COLUMN IF NOT EXISTS service_date date,
    ADD COLUMN IF NOT EXISTS detail_type  text NOT NULL DEFAULT 'SalesItemLineDetail';

ALTER TABLE public.invoice_payment
    ADD COLUMN IF NOT EXISTS amount              numeric(15, 2) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS unapplied_amount    numeric(15, 2) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS payment_date        date NOT NULL DEFAULT current_date,
    ADD COLUMN IF NOT EXISTS payment_method_ref  text,
    ADD COLUMN IF NOT EXISTS reference_number    text,
    ADD COLUMN IF NOT EXISTS deposit_account_ref text,
    ADD COLUMN IF NOT EXISTS currency_code       text,
    ADD COLUMN IF NOT EXISTS private_note        text,
    ADD COLUMN IF NOT EXISTS is_voided           boolean NOT NULL DEFAULT false;

-- QBO columns common to every synced entity. qbo_local_version moves when the application changes a
-- synced field; qbo_synced_version records the version QBO has. A row needs a push when
-- qbo_local_version > qbo_synced_version. qbo_request_id is the `requestid` of the pending create,
-- stored before it is sent and reused on every retry.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['customer_profile', 'item_record', 'invoice_record', 'invoice_payment'] LOOP
        EXECUTE format($f$
            ALTER TABLE public.%I
                ADD COLUMN IF NOT EXISTS qbo_id              text,
                ADD COLUMN IF NOT EXISTS qbo_sync_token      text,
                ADD COLUMN IF NOT EXISTS qbo_created_at      timestamptz,
                ADD COLUMN IF NOT EXISTS qbo_updated_at      timestamptz,
                ADD COLUMN IF NOT EXISTS qbo_last_synced_at  timestamptz,
                ADD COLUMN IF NOT EXISTS qbo_sync_status     text NOT NULL DEFAULT 'pending',
                ADD COLUMN IF NOT EXISTS qbo_sync_error      text,
                ADD COLUMN IF NOT EXISTS qbo_request_id      uuid,
                ADD COLUMN IF NOT EXISTS qbo_local_version   bigint NOT NULL DEFAULT 1,
                ADD COLUMN IF NOT EXISTS qbo_synced_version  bigint NOT NULL DEFAULT 0,
                ADD COLUMN IF NOT EXISTS qbo_raw             jsonb
        $f$, t);
        EXECUTE format(
            'ALTER TABLE public.%I ADD CONSTRAINT %I UNIQUE (organization_id, qbo_id)',
            t, t || '_organization_qbo_id_key');
        EXECUTE format(
            'ALTER TABLE public.%I ADD CONSTRAINT %I CHECK (qbo_sync_status IN (''pending'', ''synced'', ''error'', ''conflict''))',
            t, t || '_qbo_sync_status_check');
        EXECUTE format(
            'CREATE INDEX %I ON public.%I (organization_id) WHERE qbo_local_version > qbo_synced_version',
            t || '_needs_push_idx', t);
    END LOOP;
END
$$;

ALTER TABLE public.invoice_line_item
    ADD COLUMN IF NOT EXISTS qbo_line_id text,
    ADD CONSTRAINT invoice_line_item_invoice_qbo_line_id_key UNIQUE (invoice_id, qbo_line_id);

CREATE INDEX IF NOT EXISTS invoice_line_item_invoice_idx ON public.invoice_line_item (invoice_id, line_number);
CREATE INDEX IF NOT EXISTS invoice_record_customer_idx ON public.invoice_record (organization_id, customer_id);
CREATE INDEX IF NOT EXISTS invoice_payment_invoice_idx ON public.invoice_payment (organization_id, invoice_id);

-- Rows the application deleted after they reached QBO: the push deactivates, deletes or voids them
-- there. Filled by triggers; drained by the push.
CREATE TABLE qbo_sync.local_deletion (
    organization_id uuid NOT NULL,
    entity_type     text NOT NULL CHECK (entity_type IN ('customers', 'items', 'invoices', 'payments')),
    qbo_id          text NOT NULL,
    qbo_sync_token  text,
    deleted_at      timestamptz NOT NULL DEFAULT now(),
    pushed_at       timestamptz,
    PRIMARY KEY (organization_id, entity_type, qbo_id)
);
