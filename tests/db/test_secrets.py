"""Secrets come from the secrets file or the environment, never from a table or a setting;
tokens are encrypted at rest."""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import TOKEN_KEY


def test_tokens_are_stored_encrypted_and_decrypt_with_the_key(conn, org):
    token = "RT1-39-H3-1785429816rcysb9dns1ofreknypnm"
    conn.execute(
        "UPDATE qbo_connection SET qbo_refresh_token_encrypted = qbo_sync.encrypt_token(%s)"
        " WHERE organization_id = %s",
        (token, org),
    )
    stored = conn.execute(
        "SELECT qbo_refresh_token_encrypted FROM qbo_connection WHERE organization_id = %s", (org,)
    ).fetchone()[0]
    assert token.encode() not in bytes(stored)
    assert (
        conn.execute(
            "SELECT qbo_sync.decrypt_token(qbo_refresh_token_encrypted) FROM qbo_connection WHERE organization_id = %s",
            (org,),
        ).fetchone()[0]
        == token
    )
    # the wrong key cannot read it
    with pytest.raises(psycopg.errors.ExternalRoutineInvocationException, match="Wrong key"):
        conn.execute("SELECT pgp_sym_decrypt(%s, 'not-the-key')", (stored,))


def test_the_key_comes_from_the_secrets_file(conn):
    assert conn.execute("SELECT qbo_sync.secret('QBO_SYNC_TOKEN_KEY')").fetchone()[0] == TOKEN_KEY


def test_no_secret_is_in_a_table_or_a_setting(conn, org):
    conn.execute(
        "UPDATE qbo_connection SET qbo_access_token_encrypted = qbo_sync.encrypt_token('at-123')"
    )
    settings = conn.execute(
        "SELECT string_agg(name || '=' || setting, ' ') FROM pg_settings"
    ).fetchone()[0]
    assert TOKEN_KEY not in settings and "test-verifier-token" not in settings
    dumped = conn.execute(
        "SELECT string_agg(t::text, ' ') FROM (SELECT * FROM qbo_sync.settings) AS t"
    ).fetchone()[0]
    assert TOKEN_KEY not in dumped
    rows = conn.execute("SELECT qbo_connection::text FROM qbo_connection").fetchone()[0]
    assert "at-123" not in rows


def test_unknown_and_missing_secrets_give_clear_errors(conn):
    with pytest.raises(psycopg.Error, match="unknown secret 'PATH'"):
        conn.execute("SELECT qbo_sync.secret('PATH')")
    conn.execute("SET qbo_sync.secrets_file = '/nonexistent/secrets.env'")
    with pytest.raises(psycopg.Error, match="cannot read the secrets file") as info:
        conn.execute("SELECT qbo_sync.secret('QBO_CLIENT_ID')")
    assert "readable by the server's user" in info.value.diag.message_hint
    conn.execute("RESET qbo_sync.secrets_file")
