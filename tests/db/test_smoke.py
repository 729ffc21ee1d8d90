"""Smoke: the test cluster runs qbo-sync with PL/Python, pgcrypto and pgTAP."""


def test_installed_version_is_queryable(conn):
    from qbo_sync import __version__

    assert conn.execute("SELECT qbo_sync.version()").fetchone()[0] == __version__
