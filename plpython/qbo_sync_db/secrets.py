"""Secrets for the in-database code: read from the server's environment or the secrets file.

Secrets never live in a table or a setting that a dump or SHOW reveals. The setting
`qbo_sync.secrets_file` names a file on the database host (KEY=value lines, readable only by
the server's user); a variable of the same name in the server's environment wins over the file.
"""

from __future__ import annotations

import os
from typing import Any

from qbo_sync_db.errors import ConfigurationError, raise_error

KNOWN_SECRETS = frozenset(
    {"QBO_SYNC_TOKEN_KEY", "QBO_WEBHOOK_VERIFIER_TOKEN", "QBO_CLIENT_ID", "QBO_CLIENT_SECRET"}
)

_file_cache: dict[str, tuple[float, dict[str, str]]] = {}


def parse_env_file(text: str) -> dict[str, str]:
    """Parse KEY=value lines; blank lines and # comments are ignored, quotes are stripped."""
    values: dict[str, str] = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def read_secrets_file(path: str) -> dict[str, str]:
    """The file's values, re-read only when its modification time changes."""
    mtime = os.stat(path).st_mtime
    cached = _file_cache.get(path)
    if cached is None or cached[0] != mtime:
        with open(path, encoding="utf-8") as handle:
            cached = (mtime, parse_env_file(handle.read()))
        _file_cache[path] = cached
    return cached[1]


def get_secret(plpy: Any, name: str) -> str:
    if name not in KNOWN_SECRETS:
        known = ", ".join(sorted(KNOWN_SECRETS))
        raise_error(
            plpy, ConfigurationError(f"unknown secret {name!r}", hint=f"known secrets: {known}")
        )
    value = os.environ.get(name)
    if value:
        return value
    path = plpy.execute("SELECT current_setting('qbo_sync.secrets_file', true) AS path")[0]["path"]
    if path:
        try:
            value = read_secrets_file(path).get(name)
        except OSError as exc:
            raise_error(
                plpy,
                ConfigurationError(
                    f"cannot read the secrets file named by qbo_sync.secrets_file: {exc.strerror}",
                    hint="the file must exist on the database host, readable by the server's user",
                ),
            )
    if not value:
        raise_error(
            plpy,
            ConfigurationError(
                f"secret {name} is not set",
                hint="set it in the server's environment or in the file named by the setting "
                "qbo_sync.secrets_file (ALTER SYSTEM SET qbo_sync.secrets_file = '/path')",
            ),
        )
    return value


def app_credentials(plpy: Any) -> tuple[str, str]:
    """The Intuit app's client id and secret (for the OAuth endpoints)."""
    return get_secret(plpy, "QBO_CLIENT_ID"), get_secret(plpy, "QBO_CLIENT_SECRET")
