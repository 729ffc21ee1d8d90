"""qbo_sync_db.secrets without a database: parsing, caching, environment first, clear errors."""

from __future__ import annotations

import pytest
from qbo_sync_db import secrets


class PlpyError(Exception):
    def __init__(self, message: str, hint: str | None = None, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        self.sqlstate = sqlstate


class FakePlpy:
    def __init__(self, secrets_file: str | None) -> None:
        self.secrets_file = secrets_file

    def execute(self, query: str) -> list[dict]:
        assert "qbo_sync.secrets_file" in query
        return [{"path": self.secrets_file}]

    def error(self, message: str, hint: str | None = None, sqlstate: str | None = None) -> None:
        raise PlpyError(message, hint, sqlstate)


def test_parse_env_file():
    text = "# comment\n\nA=1\nB = two words \nC='quoted'\nD=\"dq\"\nE=a=b\nnot a pair\n"
    assert secrets.parse_env_file(text) == {
        "A": "1",
        "B": "two words",
        "C": "quoted",
        "D": "dq",
        "E": "a=b",
    }


def test_secret_from_file_then_environment(tmp_path, monkeypatch):
    path = tmp_path / "secrets.env"
    path.write_text("QBO_CLIENT_ID=from-file\n")
    monkeypatch.delenv("QBO_CLIENT_ID", raising=False)
    plpy = FakePlpy(str(path))
    assert secrets.get_secret(plpy, "QBO_CLIENT_ID") == "from-file"
    monkeypatch.setenv("QBO_CLIENT_ID", "from-env")
    assert secrets.get_secret(plpy, "QBO_CLIENT_ID") == "from-env"


def test_file_is_reread_when_it_changes(tmp_path, monkeypatch):
    import os

    monkeypatch.delenv("QBO_CLIENT_SECRET", raising=False)
    path = tmp_path / "secrets.env"
    path.write_text("QBO_CLIENT_SECRET=one\n")
    plpy = FakePlpy(str(path))
    assert secrets.get_secret(plpy, "QBO_CLIENT_SECRET") == "one"
    path.write_text("QBO_CLIENT_SECRET=two\n")
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 5))
    assert secrets.get_secret(plpy, "QBO_CLIENT_SECRET") == "two"


def test_missing_and_unknown_secrets(tmp_path, monkeypatch):
    monkeypatch.delenv("QBO_WEBHOOK_VERIFIER_TOKEN", raising=False)
    path = tmp_path / "secrets.env"
    path.write_text("OTHER=1\n")
    with pytest.raises(PlpyError, match="QBO_WEBHOOK_VERIFIER_TOKEN is not set") as info:
        secrets.get_secret(FakePlpy(str(path)), "QBO_WEBHOOK_VERIFIER_TOKEN")
    assert "qbo_sync.secrets_file" in info.value.hint
    # a configuration error, with its own SQLSTATE (not XX000): a job failing on it is not retried
    assert info.value.sqlstate == "QS002"
    with pytest.raises(PlpyError, match="unknown secret") as info:
        secrets.get_secret(FakePlpy(str(path)), "HOME")
    assert info.value.sqlstate == "QS002"
    with pytest.raises(PlpyError, match="cannot read the secrets file") as info:
        secrets.get_secret(FakePlpy(str(tmp_path / "absent")), "QBO_CLIENT_ID")
    assert info.value.sqlstate == "QS002"
