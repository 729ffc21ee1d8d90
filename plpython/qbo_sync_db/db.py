"""Statements the in-database code runs, prepared once per backend.

`execute(plpy, query, types, args)` prepares `query` the first time a backend runs it and reuses
the plan after that; every value travels as a parameter, never in the statement text (tokens
above all).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_plans: dict[tuple[str, tuple[str, ...]], Any] = {}


def execute(plpy: Any, query: str, types: Sequence[str], args: Sequence[Any]) -> Any:
    key = (query, tuple(types))
    if key not in _plans:
        _plans[key] = plpy.prepare(query, list(types))
    return plpy.execute(_plans[key], list(args))
