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
    console.print(table)


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
    seconds = value.total_seconds()
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 120:
        return f"{sign}{seconds:.0f} s"
    if seconds < 7200:
        return f"{sign}{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{sign}{seconds / 3600:.0f} h"
    return f"{sign}{seconds / 86400:.0f} days"
