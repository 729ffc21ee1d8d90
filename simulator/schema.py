"""What the control surface accepts: one description per input (type, range, choices).

Settings (``SimulatorConfig``, ``RealmStatus``) carry their spec next to their default (see
:func:`setting`); the ``/_sim`` endpoints describe their bodies with the same specs. :func:`check`
validates a whole JSON object, unknown keys included, before anything is applied, so a bad request
changes nothing; the first problem is raised as a :class:`SchemaError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar

from simulator.clock import parse_ts

# The simulated clock stays inside this range (epoch seconds): 2000-01-01 .. 2100-01-01 UTC.
EARLIEST = 946684800.0
LATEST = 4102444800.0
TEN_YEARS_S = 315_360_000


class SchemaError(ValueError):
    """A value the control surface refuses; ``field`` names it (``apps[0].client_id``)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class Spec(ABC):
    """One value's rule; ``nullable`` admits JSON null."""

    nullable: bool = False

    def clean(self, name: str, value: Any) -> Any:
        if value is None:
            if self.nullable:
                return None
            raise SchemaError(name, "must not be null")
        return self.convert(name, value)

    @abstractmethod
    def convert(self, name: str, value: Any) -> Any:
        """The checked value (each kind of spec says how)."""


@dataclass(frozen=True, kw_only=True)
class Bool(Spec):
    def convert(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise SchemaError(name, f"must be true or false, got {value!r}")
        return value


@dataclass(frozen=True)
class Num(Spec):
    """A finite JSON number between lo and hi (``Int``: an integer)."""

    lo: float
    hi: float
    kinds: ClassVar[tuple[type, ...]] = (int, float)
    noun: ClassVar[str] = "a number"

    def convert(self, name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, self.kinds):
            raise SchemaError(name, f"must be {self.noun}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise SchemaError(name, f"must be a finite number, got {value!r}")
        if not self.lo <= value <= self.hi:
            raise SchemaError(
                name, f"must be between {_show(self.lo)} and {_show(self.hi)}, got {_show(value)}"
            )
        return value


@dataclass(frozen=True)
class Int(Num):
    lo: int
    hi: int
    kinds: ClassVar[tuple[type, ...]] = (int,)
    noun: ClassVar[str] = "an integer"


def _show(number: float) -> str:
    text = str(number) if isinstance(number, int) else f"{number:g}"
    return text if len(text) <= 24 else text[:20] + "..."


@dataclass(frozen=True)
class Str(Spec):
    max_len: int = 200
    choices: tuple[str, ...] | None = None
    pattern: str | None = None  # a full match is required
    hint: str = ""  # what the pattern means, for the error message

    def convert(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise SchemaError(name, f"must be a string, got {value!r}")
        if self.choices is not None:
            if value not in self.choices:
                raise SchemaError(name, f"must be one of {list(self.choices)}, got {value!r}")
            return value
        if not value.strip():
            raise SchemaError(name, "must not be empty")
        if len(value) > self.max_len:
            raise SchemaError(name, f"must be at most {self.max_len} characters")
        if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
            raise SchemaError(name, f"must be {self.hint or self.pattern}, got {value!r}")
        return value


@dataclass(frozen=True, kw_only=True)
class Day(Spec):
    """A calendar date, YYYY-MM-DD."""

    def convert(self, name: str, value: Any) -> str:
        if isinstance(value, str):
            try:
                return date.fromisoformat(value).isoformat()
            except ValueError:
                pass
        raise SchemaError(name, f"must be a date YYYY-MM-DD, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class Instant(Spec):
    """An ISO date or date-time (naive: US-Pacific) inside the clock's range; cleaned to epoch."""

    def convert(self, name: str, value: Any) -> float:
        try:
            epoch = parse_ts(value) if isinstance(value, str) else None
        except ValueError:
            epoch = None
        if epoch is None:
            raise SchemaError(name, f"must be an ISO 8601 date or date-time, got {value!r}")
        check_epoch(name, epoch)
        return epoch


@dataclass(frozen=True)
class ListOf(Spec):
    item: Spec
    max_items: int = 100
    min_items: int = 0

    def convert(self, name: str, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise SchemaError(name, f"must be a list, got {value!r}")
        if not self.min_items <= len(value) <= self.max_items:
            raise SchemaError(
                name, f"must hold {self.min_items} to {self.max_items} items, got {len(value)}"
            )
        return [self.item.clean(f"{name}[{i}]", v) for i, v in enumerate(value)]


@dataclass(frozen=True)
class Obj(Spec):
    """A JSON object with known keys (``fields``); None: any object (passed on as it is)."""

    fields: Mapping[str, Spec] | None = None
    required: frozenset[str] = frozenset()

    def convert(self, name: str, value: Any) -> dict[str, Any]:
        if self.fields is None:
            if not isinstance(value, dict):
                raise SchemaError(name, f"must be a JSON object, got {value!r}")
            return value
        return check(self.fields, value, self.required, where=name)


URL = Str(max_len=2000, pattern=r"https?://\S+", hint="an http(s) URL")
REALM_ID = Str(max_len=32, pattern=r"[0-9]+", hint="a realm id (decimal digits)")
REALM_ID_OR_NULL = dataclasses.replace(REALM_ID, nullable=True)
SECONDS = Int(0, TEN_YEARS_S)
RATE = Num(0, 1)


def check(
    schema: Mapping[str, Spec],
    data: Any,
    required: Collection[str] = (),
    where: str = "",
    noun: str = "field",
) -> dict[str, Any]:
    """The cleaned copy of a JSON object, or SchemaError for its first bad, unknown or missing
    key (keys are checked in the order sent); ``noun`` names the keys in messages."""
    if not isinstance(data, dict):
        raise SchemaError(where or "body", "must be a JSON object")
    prefix = f"{where}." if where else ""
    clean: dict[str, Any] = {}
    for key, value in data.items():
        spec = schema.get(key)
        if spec is None:
            known = f"; known: {sorted(schema)}" if len(schema) <= 12 else ""
            raise SchemaError(prefix + str(key), f"unknown {noun}{known}")
        clean[key] = spec.clean(prefix + key, value)
    for key in required:
        if key not in clean:
            raise SchemaError(prefix + key, "is required")
    return clean


def check_epoch(name: str, epoch: float) -> None:
    """The simulated clock must stay between 2000 and 2100 (timestamps format and compare)."""
    if not EARLIEST <= epoch < LATEST:
        raise SchemaError(name, "would put the clock outside 2000-01-01 .. 2100-01-01")


def setting(spec: Spec, default: Any = None, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with its spec attached (read back by :func:`schema_of`)."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"spec": spec})
    return dataclasses.field(default=default, metadata={"spec": spec})


def schema_of(cls: type) -> dict[str, Spec]:
    """The specs of a dataclass built with :func:`setting`, by field name."""
    return {f.name: f.metadata["spec"] for f in dataclasses.fields(cls) if "spec" in f.metadata}
