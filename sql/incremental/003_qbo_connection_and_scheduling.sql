-- Migration 003: the QBO connection per organization (tokens encrypted at rest), OAuth state,
-- per-organization sync cursors and recorded conflicts.

CREATE TABLE public.qbo_connection (
    organization_id                 uuid PRIMARY KEY REFERENCES public.organizations (id) ON DELETE CASCADE,
    realm_id                        text NOT NULL UNIQUE,
    environment                     text NOT NULL DEFAULT 'production'
                                    CHECK (environment IN ('production', 'sandbox', 'simulator')),
    api_base_url                    text,
    company_name                    text,
    qbo_access_token_encrypted      bytea,
    qbo_refresh_token_encrypted     bytea,
    qbo_token_expires_at            timestamptz,
    qbo_refresh_token_expires_at    timestamptz,
    qbo_refresh_token_hard_expires_at timestamptz,
    is_active                       boolean NOT NULL DEFAULT true,
    inactive_reason                 text,
    connected_at                    timestamptz NOT NULL DEFAULT now(),
    last_refreshed_at               timestamptz,
    last_refresh_error              text,
    refresh_failure_count           integer NOT NULL DEFAULT 0,
    created_at                      timestamptz NOT NULL DEFAULT now(),
    updated_at                      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT qbo_connection_inactive_has_reason CHECK (is_active OR inactive_reason IS NOT NULL)
);
COMMENT ON COLUMN public.qbo_connection.qbo_access_token_encrypted IS 'pgp_sym_encrypt with the key from the secrets file';
COMMENT ON COLUMN public.qbo_connection.inactive_reason IS 'why is_active is false (e.g. invalid_grant, disconnected)';

-- OAuth `state` values handed out by qbo_oauth_initiate and consumed once by the callback.
CREATE TABLE public.qbo_oauth_state (
    state           text PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    redirect_uri    text NOT NULL,
    environment     text NOT NULL DEFAULT 'production',
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL DEFAULT now() + interval '10 minutes',
    consumed_at     timestamptz
);
CREATE INDEX qbo_oauth_state_org_idx ON public.qbo_oauth_state (organization_id);

-- Where each organization's pull stands, per entity type (CDC high-water mark, last full sync).
CREATE TABLE public.qbo_sync_cursor (
    organization_id     uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    entity_type         text NOT NULL CHECK (entity_type IN ('items', 'customers', 'invoices', 'payments')),
    last_changed_since  timestamptz,
    last_full_sync_at   timestamptz,
    last_pull_at        timestamptz,
    last_push_at        timestamptz,
    PRIMARY KEY (organization_id, entity_type)
);

-- Fields changed on both sides: kept where a person can see them.
CREATE TABLE public.qbo_sync_conflict (
    organization_id uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    entity_type     text NOT NULL,
    local_id        uuid,
    qbo_id          text,
    local_values    jsonb NOT NULL DEFAULT '{}',
    remote_values   jsonb NOT NULL DEFAULT '{}',
    resolution      text NOT NULL DEFAULT 'qbo_wins',
    detected_at     timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz,
    PRIMARY KEY (organization_id, id)
);

CREATE TABLE qbo_sync.organization_settings (
    organization_id uuid PRIMARY KEY REFERENCES public.organizations (id) ON DELETE CASCADE,
    conflict_policy text NOT NULL DEFAULT 'qbo_wins'
                    CHECK (conflict_policy IN ('qbo_wins', 'local_wins'))
);
