"""The README's SQL for adding an organization runs as written and shows in qbo_sync_status."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def section_sql(heading: str) -> str:
    """The first ```sql block after `heading` in the README."""
    text = README.read_text(encoding="utf-8")
    after = text[text.index(heading) :]
    match = re.search(r"^```sql\n(.*?)^```", after, re.MULTILINE | re.DOTALL)
    assert match, f"no sql block after {heading!r}"
    return match.group(1)


def test_adding_an_organization_as_the_readme_says(conn):
    conn.execute(section_sql("### Adding an organization"))
    row = conn.execute(
        "SELECT organization_name, realm_id, environment, is_active, token_status"
        " FROM qbo_sync_status"
    ).fetchone()
    assert row == ("Batchly", "4620816365298360990", "sandbox", True, "valid")
    token = conn.execute(
        "SELECT qbo_sync.decrypt_token(qbo_access_token_encrypted) FROM qbo_connection"
    ).fetchone()
    assert token == ("<access token>",)
