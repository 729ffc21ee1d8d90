"""Split an SQL file into its statements, each with the line it starts on.

The installer runs its files one statement at a time so that a failure can name the file, the
line and the table. The split honours what PostgreSQL's own lexer would: single-quoted strings,
double-quoted identifiers, dollar-quoted bodies (`$$`, `$tag$`) and `--` and nested `/* */`
comments; a semicolon inside any of them does not end a statement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass
class Statement:
    """One SQL statement of a file and the line it starts on."""

    line: int
    text: str


DOLLAR_QUOTE = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")
IDENTIFIER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")


def _skip_quoted(text: str, start: int) -> int:
    """The index after the quoted string, identifier, dollar-quoted body or comment at `start`
    (`start` itself when nothing quoted starts there)."""
    if text.startswith("--", start):
        end = text.find("\n", start)
        return len(text) if end < 0 else end + 1
    if text.startswith("/*", start):
        depth, i = 0, start
        while i < len(text):
            if text.startswith("/*", i):
                depth, i = depth + 1, i + 2
            elif text.startswith("*/", i):
                depth, i = depth - 1, i + 2
                if depth == 0:
                    return i
            else:
                i += 1
        return len(text)
    char = text[start]
    if char in "'\"":
        i = start + 1
        while True:
            i = text.find(char, i)
            if i < 0:
                return len(text)
            if not text.startswith(char * 2, i):
                return i + 1
            i += 2  # a doubled quote stands for itself
    if char == "$" and (start == 0 or text[start - 1] not in IDENTIFIER_CHARS):
        match = DOLLAR_QUOTE.match(text, start)
        if match:
            end = text.find(match.group(0), match.end())
            return len(text) if end < 0 else end + len(match.group(0))
    return start


def sql_statements(text: str) -> list[Statement]:
    """Split an SQL file into statements at the semicolons outside quotes, dollar-quoted bodies
    and comments; each keeps the line it starts on (leading comments are dropped)."""
    statements: list[Statement] = []
    code_start: int | None = None
    i = 0
    while i < len(text):
        after = _skip_quoted(text, i)
        if after != i and text.startswith(("--", "/*"), i):
            i = after
            continue
        if code_start is None and not text[i].isspace():
            code_start = i
        if after != i:
            i = after
        elif text[i] == ";":
            start = i if code_start is None else code_start
            line = text.count("\n", 0, start) + 1
            statements.append(Statement(line, text[start : i + 1]))
            code_start, i = None, i + 1
        else:
            i += 1
    if code_start is not None:
        statements.append(Statement(text.count("\n", 0, code_start) + 1, text[code_start:]))
    return statements
