"""Splitting SQL files into statements: semicolons in strings, identifiers, dollar-quoted bodies
and comments do not end a statement, and each statement knows the line it starts on."""

from __future__ import annotations

import pytest

from qbo_sync.install import SQL_DIR
from qbo_sync.sqlfile import Statement, sql_statements


def test_statements_and_their_lines():
    text = "-- header; not code\nCREATE TABLE a (x int);\n\nSELECT 1;\n  SELECT 2"
    assert sql_statements(text) == [
        Statement(2, "CREATE TABLE a (x int);"),
        Statement(4, "SELECT 1;"),
        Statement(5, "SELECT 2"),
    ]


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 'a;b', 'it''s; fine';",
        'SELECT 1 AS "odd;name", 2 AS "say ""hi;""";',
        "DO $$ BEGIN PERFORM 1; PERFORM 2; END $$;",
        "DO $do$ BEGIN EXECUTE format($f$ SELECT $$;$$ $f$); END $do$;",
        "SELECT 1 /* a; /* nested; */ still a comment; */ + 1;",
        "SELECT 1 -- trailing; comment\n + 1;",
        "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql AS 'SELECT $1';",
    ],
)
def test_quoted_semicolons_do_not_split(statement):
    assert sql_statements(statement + "\nSELECT 3;") == [
        Statement(1, statement),
        Statement(statement.count("\n") + 2, "SELECT 3;"),
    ]


def test_a_dollar_inside_an_identifier_is_not_a_quote():
    assert [s.text for s in sql_statements("SELECT 1 AS a$b$; SELECT 2;")] == [
        "SELECT 1 AS a$b$;",
        "SELECT 2;",
    ]


@pytest.mark.parametrize("path", sorted(SQL_DIR.glob("*/*.sql")), ids=lambda p: p.name)
def test_every_project_file_splits_into_whole_statements(path):
    text = path.read_text()
    statements = sql_statements(text)
    assert statements and all(s.text.rstrip().endswith(";") for s in statements)
    lines = text.splitlines()
    for statement in statements:  # each starts where it says
        assert lines[statement.line - 1].lstrip().startswith(statement.text.split("\n")[0])
