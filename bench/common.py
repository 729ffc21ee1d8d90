"""Shared pieces of the benchmarks: a throw-away PostgreSQL cluster, table printing, JSON output."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qbo_sync.pgserver import Cluster, free_port, give_to_server_user

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@contextmanager
def temporary_cluster(settings: dict[str, str] | None = None) -> Iterator[Cluster]:
    """A PostgreSQL cluster in a fresh temporary directory, on a free port; destroyed afterwards."""
    base_dir = Path(tempfile.mkdtemp(prefix="qbo-sync-bench-"))
    give_to_server_user(base_dir, 0o755)
    cluster = Cluster(base_dir=base_dir, port=free_port(), extra_settings=dict(settings or {}))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: text columns left-aligned, numbers right-aligned."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            if abs(value) >= 100:
                return f"{value:,.0f}"
            return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3f}"
        if isinstance(value, int):
            return f"{value:,}"
        return "" if value is None else str(value)

    text_rows = [[cell(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in text_rows:
        for index, value in enumerate(row):
            widths[index] = max(widths[index], len(value))
    numeric = [
        all(isinstance(row[index], (int, float)) or row[index] is None for row in rows)
        for index in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            value.rjust(width) if is_number else value.ljust(width)
            for value, width, is_number in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(list(headers)), line(["-" * width for width in widths])]
    out.extend(line(row) for row in text_rows)
    return "\n".join(out)


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write `data` to bench/results/<name>.json and return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path
