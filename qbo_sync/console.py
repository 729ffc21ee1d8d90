"""How the `qbo-sync` command shows things: tables and progress with colour on a terminal, plain
aligned text when the output is piped or redirected (rich decides from the stream; NO_COLOR is
honoured)."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table

#: wide enough that piped tables are not wrapped
PIPED_WIDTH = 240


def make_console(stream: TextIO | None = None) -> Console:
    stream = stream or sys.stdout
    terminal = stream.isatty()
    return Console(
        file=stream,
        highlight=False,
        soft_wrap=False,
        width=None if terminal else PIPED_WIDTH,
        force_terminal=terminal,
    )


def show_table(
    console: Console,
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    empty: str = "(none)",
) -> None:
    table = Table(
        title=title,
        title_justify="left",
        box=box.ROUNDED if console.is_terminal else None,
        show_edge=console.is_terminal,
        header_style="bold" if console.is_terminal else "",
        pad_edge=False,
    )
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(text(value) for value in row))
    if not rows:
        if title:
            console.print(f"{title}: {empty}")
        else:
            console.print(empty)
        return
    if console.is_terminal:
        console.print(table)
        return
    with console.capture() as captured:  # piped: the same columns, without the padding after
        console.print(table)
    for line in captured.get().splitlines():
        console.file.write(line.rstrip() + "\n")
    console.file.flush()


def text(value: Any) -> str:
    """A cell: times to the second in UTC, intervals in words, nothing for NULL."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, dt.timedelta):
        return duration(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(text(v) for v in value)
    return str(value)


def duration(value: dt.timedelta) -> str:
    """A time left or past, rounded down (a token with 100.9 days left has 100, as the status
    page says: never more than it has)."""
    seconds = value.total_seconds()
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 120:
        return f"{sign}{int(seconds)} s"
    if seconds < 7200:
        return f"{sign}{int(seconds // 60)} min"
    if seconds < 2 * 86400:
        return f"{sign}{int(seconds // 3600)} h"
    return f"{sign}{int(seconds // 86400)} days"
