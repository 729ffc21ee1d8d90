"""Installer inputs without a database: migration order, checksums, the in-database package."""

from __future__ import annotations

import re
import tomllib

from qbo_sync.install import (
    PYTHON_DIR,
    SQL_DIR,
    idempotent_files,
    migration_files,
    python_modules,
)


def test_migrations_are_numbered_and_ordered():
    names = [p.name for p in migration_files(SQL_DIR)]
    assert names and all(re.fullmatch(r"\d{3}_qbo_[a-z_]+\.sql", n) for n in names)
    numbers = [int(n[:3]) for n in names]
    assert numbers == list(range(1, len(names) + 1))


def test_idempotent_layer_is_re_runnable_sql():
    for path in idempotent_files(SQL_DIR):
        text = path.read_text()
        # nothing in the idempotent layer creates a table: tables belong to migrations
        assert not re.search(r"CREATE TABLE(?! IF NOT EXISTS)", text), path.name


def test_in_database_package_modules_and_version():
    """The package the installer stores has its modules, and its version is the project's
    (pyproject.toml and qbo_sync_db.__version__ are written by hand in two places)."""
    modules = {name: is_package for name, _source, is_package in python_modules(PYTHON_DIR)}
    assert modules["qbo_sync_db"] is True and modules["qbo_sync_db.secrets"] is False
    assert modules["qbo_sync_db.errors"] is False
    init = next(src for name, src, _ in python_modules(PYTHON_DIR) if name == "qbo_sync_db")
    declared = re.search(r'^__version__ = "([^"]+)"$', init, re.M)
    project = tomllib.loads((PYTHON_DIR.parent / "pyproject.toml").read_text())["project"]
    assert declared and declared.group(1) == project["version"]


def test_in_database_code_imports_only_the_standard_library_and_requests():
    allowed = {
        "__future__",
        "os",
        "typing",
        "json",
        "re",
        "hashlib",
        "hmac",
        "base64",
        "binascii",
        "importlib",  # qbo_sync_db.worker imports a handler of the stored package
        "time",
        "datetime",
        "decimal",
        "uuid",
        "dataclasses",
        "collections",
        "urllib",
        "random",
        "requests",
        "qbo_sync_db",
        "enum",
        "functools",
        "itertools",
        "email",
        "math",
    }
    for name, source, _ in python_modules(PYTHON_DIR):
        for module in re.findall(r"^\s*(?:from|import)\s+([a-zA-Z_][\w]*)", source, re.M):
            assert module in allowed, f"{name} imports {module}"
