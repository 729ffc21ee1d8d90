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
