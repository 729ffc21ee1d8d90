"""qbo_sync_db.errors without a database: every error carries an explicit SQLSTATE, and
raise_error hands it to plpy (PL/Python's own defaults, XX000 and 38000, say nothing)."""

from __future__ import annotations

import re

import pytest
from qbo_sync_db import errors


class Raised(Exception):
    pass


class RecordingPlpy:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def error(self, message: str, **kwargs: str) -> None:
        self.calls.append((message, kwargs))
        raise Raised(message)


class SilentPlpy:
    """A stand-in whose error() returns: raise_error must still not return."""

    def error(self, message: str, **kwargs: str) -> None:
        return None


def test_every_error_class_has_its_own_valid_sqlstate():
    codes = [cls.sqlstate for cls in errors.ERROR_CLASSES]
    assert len(codes) == len(set(codes))
    for code in codes:
        assert re.fullmatch(r"Q[BS][0-9A-Z]{3}", code)
        assert code not in ("XX000", "38000")


def test_only_throttling_server_errors_and_timeouts_are_retryable():
    retryable = {cls.__name__ for cls in errors.ERROR_CLASSES if cls.retryable}
    assert retryable == {"QboThrottled", "QboServerError", "QboUnreachable"}


def test_raise_error_passes_the_sqlstate_hint_and_detail():
    plpy = RecordingPlpy()
    with pytest.raises(Raised):
        errors.raise_error(plpy, errors.QboThrottled("slow down", hint="wait", detail="429"))
    assert plpy.calls == [("slow down", {"sqlstate": "QB429", "hint": "wait", "detail": "429"})]


def test_raise_error_never_returns():
    with pytest.raises(errors.ConfigurationError):
        errors.raise_error(SilentPlpy(), errors.ConfigurationError("missing"))


def test_the_sqlstate_of_an_spi_error_is_unpacked_as_postgresql_packs_it():
    """PL/Python sets `sqlstate` only on the exception classes it knows; for the project's own
    codes the worker reads the packed code in `spidata` (PostgreSQL's MAKE_SQLSTATE: six bits a
    character, first character lowest). 17569 is what PostgreSQL 15 reports for QB400."""
    from qbo_sync_db.worker import sqlstate_of

    class Raised(Exception):
        def __init__(self, spidata, sqlstate=None):
            self.spidata = spidata
            self.sqlstate = sqlstate

    def packed(code: str) -> int:
        return sum(((ord(c) - ord("0")) & 0x3F) << (6 * i) for i, c in enumerate(code))

    assert packed("QB400") == 17569
    for code in ("QB400", "QB429", "QS003", "22012", "XX000", "55P03", "40P01"):
        assert sqlstate_of(Raised((packed(code), None))) == code
    assert sqlstate_of(Raised((0,), sqlstate="23505")) == "23505"  # a class PL/Python knows
    assert sqlstate_of(Raised(None)) == "XX000"


def test_error_class_finds_the_class_of_each_code():
    from qbo_sync_db import errors

    for cls in errors.ERROR_CLASSES:
        assert errors.error_class(cls.sqlstate) is cls
    assert errors.error_class("QB504") is errors.QboUnreachable
    assert errors.error_class("nothing") is errors.QboSyncError
