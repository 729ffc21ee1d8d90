"""The errors the in-database code raises, each with an explicit SQLSTATE.

The worker decides whether a failed job is retried from the SQLSTATE alone
(qbo_sync.error_is_retryable): a bug must not be retried five times, a throttled call must be.
PL/Python's defaults give no such signal (plpy.error() raises XX000, an uncaught exception
38000), so everything here raises through `raise_error` with the code of its class.

The codes are listed in the table qbo_sync.error_code too (sql/idempotent/060_worker.sql); a
test keeps the two in agreement. Class QB is QuickBooks' answer, class QS is qbo-sync's own.

`QboApiError` is what QBO's answer said, whatever envelope it came in (qbo_sync_db.client parses
them all into it); an error of class QB carries it as `api_error`, so a caller can act on the
code (5010: read again; 6240: link the existing name) without parsing a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn


@dataclass(frozen=True)
class QboErrorItem:
    """One entry of a fault's `Error` list (a fault may hold several)."""

    code: str | None
    message: str
    detail: str = ""
    element: str | None = None


@dataclass(frozen=True)
class QboApiError:
    """A failed call to QBO, from any envelope.

    `source` says where it came from: "fault" (JSON `Fault`, also inside batch items), "gateway"
    (the lowercase `fault` of 401/403), "oauth" (the token endpoint's `error`), "xml" (the XML
    fault, e.g. on 429), "http" (no readable envelope: HTML, empty or unknown body), "network"
    (no answer at all) or "local" (the request could not be sent). `code` is QBO's code as a
    string ("6240", "3200", "invalid_grant"); `http_status` is None for a batch item and when
    nothing answered. Every text has been cleaned of tokens and secrets before it got here.
    """

    source: str
    http_status: int | None
    code: str | None
    message: str
    detail: str = ""
    element: str | None = None
    fault_type: str | None = None
    intuit_tid: str | None = None
    retry_after: float | None = None
    errors: tuple[QboErrorItem, ...] = ()


class QboSyncError(Exception):
    """Base class: a message for people, an optional hint, and the SQLSTATE to raise with."""

    sqlstate = "QS000"
    retryable = False

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        detail: str | None = None,
        *,
        api_error: QboApiError | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail
        self.api_error = api_error


class InstallationMismatch(QboSyncError):
    sqlstate = "QS001"


class ConfigurationError(QboSyncError):
    """A secret or setting qbo-sync needs is missing or unreadable."""

    sqlstate = "QS002"


class RelationsReplaced(QboSyncError):
    """A table the owner's code works on is no longer qbo-sync's (replaced in public)."""

    sqlstate = "QS004"


class QboThrottled(QboSyncError):
    sqlstate = "QB429"
    retryable = True


class QboServerError(QboSyncError):
    sqlstate = "QB500"
    retryable = True


class QboUnreachable(QboSyncError):
    """A timeout or a failed connection: QBO may or may not have done the work."""

    sqlstate = "QB504"
    retryable = True


class QboRequestRejected(QboSyncError):
    sqlstate = "QB400"


class QboUnauthorized(QboSyncError):
    sqlstate = "QB401"


class QboForbidden(QboSyncError):
    sqlstate = "QB403"


class QboReconnectNeeded(QboSyncError):
    """invalid_grant: the refresh token is dead and a person must connect again."""

    sqlstate = "QB410"


#: every concrete error class, for the agreement test with qbo_sync.error_code
#: (qbo_sync_db.lease.LeaseLost, QS003, is checked there too)
ERROR_CLASSES: tuple[type[QboSyncError], ...] = (
    InstallationMismatch,
    ConfigurationError,
    RelationsReplaced,
    QboThrottled,
    QboServerError,
    QboUnreachable,
    QboRequestRejected,
    QboUnauthorized,
    QboForbidden,
    QboReconnectNeeded,
)


def error_class(sqlstate: str | None) -> type[QboSyncError]:
    """The class that raises `sqlstate` (QboSyncError itself for a code of no class here)."""
    for cls in ERROR_CLASSES:
        if cls.sqlstate == sqlstate:
            return cls
    return QboSyncError


def raise_error(plpy: Any, error: QboSyncError) -> NoReturn:
    """Raise `error` in the database with its SQLSTATE (plpy.error does not return)."""
    kwargs: dict[str, str] = {"sqlstate": error.sqlstate}
    if error.hint:
        kwargs["hint"] = error.hint
    if error.detail:
        kwargs["detail"] = error.detail
    plpy.error(error.message, **kwargs)
    raise error  # a stand-in plpy that returns must not let the caller go on
