-- Migration 005: the OAuth connect flow. A `state` handed out by qbo_oauth_initiate is stored
-- only as its SHA-256 (a leaked table row cannot be replayed at the callback), with the QBO
-- environment and, for the simulator, the base URL the connection will use.

ALTER TABLE public.qbo_oauth_state RENAME COLUMN state TO state_hash;
ALTER TABLE public.qbo_oauth_state
    ADD COLUMN api_base_url text,
    ADD COLUMN realm_id text,
    ADD CONSTRAINT qbo_oauth_state_environment_check
        CHECK (environment IN ('production', 'sandbox', 'simulator'));
COMMENT ON COLUMN public.qbo_oauth_state.state_hash IS 'sha256 of the state, hex; the state itself is never stored';
