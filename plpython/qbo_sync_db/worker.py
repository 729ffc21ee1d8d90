"""The worker's run step: one claimed job, from its start to recording its outcome.

`qbo_sync.worker_run_job(state)` (a procedure the worker loop CALLs) runs `run()`. The step may
commit as it goes, which a job that calls QBO needs (qbo_sync_db.txn says why), so nothing in it
may escape as an error: the loop around it has no exception block (a procedure that commits
cannot be inside one). Every failure is caught here, the job's uncommitted work rolled back, and
the outcome recorded by qbo_sync.worker_finish:

1. qbo_sync.worker_start checks the job still holds the organization its claim took (or gives
   the job back when another run took it meanwhile), committed;
2. the handler runs: the entity's Python handler (qbo_sync.entity.handler, a function of the
   stored package called with a `JobContext`), or the SQL function qbo_sync.sync_<entity>(job)
   in the current transaction;
3. qbo_sync.worker_finish records completed / failed (with SQLSTATE, message and intuit_tid) /
   lease_lost / unconfirmed and gives the organization back; the loop commits.
"""

from __future__ import annotations

import importlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from qbo_sync_db import api, db
from qbo_sync_db.errors import QboSyncError
from qbo_sync_db.lease import LeaseKeeper
from qbo_sync_db.progress import Progress
from qbo_sync_db.txn import Transaction

START = "SELECT qbo_sync.worker_start($1::jsonb)::text AS state"
FINISH = "SELECT qbo_sync.worker_finish($1::jsonb, $2::jsonb, $3, $4, $5)::text AS state"
STEP_FAILED = "SELECT qbo_sync.worker_step_failed($1::jsonb, 'run', $2, $3)::text AS state"
ABANDON = "SELECT qbo_sync.worker_abandon($1::jsonb, $2, $3)::text AS state"
#: the summary keys the history keeps as counts (whole numbers)
COUNTS = ("entity_count", "success_count", "failure_count")
RUN_SQL_HANDLER = (
    "SELECT qbo_sync.run_job(pg_catalog.jsonb_populate_record("
    "NULL::public.qbo_sync_queue, $1::jsonb))::text AS summary"
)
LEASE_SECONDS = """
SELECT qbo_sync.setting_numeric('queue.lease_seconds') AS seconds,
       qbo_sync.setting_numeric('worker.job_slice_seconds') AS slice"""

HANDLER = re.compile(r"(qbo_sync_db(?:\.[a-z_][a-z0-9_]*)+):([a-z_][a-z0-9_]*)\Z")
INTUIT_TID = re.compile(r"intuit_tid ([A-Za-z0-9-]{1,100})")


@dataclass
class JobContext:
    """What a Python handler gets: the job (its queue row as a dict), the transaction it may
    commit at consistent points, its lease, and its organization's QBO connection."""

    plpy: Any
    tx: Transaction
    job: dict[str, Any]
    lease: LeaseKeeper
    #: how long the job may run before it hands itself back at a consistent point
    slice_seconds: float = 60.0
    started: float = field(default_factory=time.monotonic)
    _connection: api.Connection | None = field(default=None, repr=False)
    _progress: Progress | None = field(default=None, repr=False)

    def time_is_up(self) -> bool:
        """Whether the job has used its slice (worker.job_slice_seconds): a handler that can
        resume then saves where it is and returns a summary with "continues": true, and the
        job goes back to the queue, so other organizations' jobs go between."""
        return time.monotonic() - self.started >= self.slice_seconds

    @property
    def organization_id(self) -> str:
        return str(self.job["organization_id"])

    def keep_lease(self) -> None:
        """Extend the job's lease when due; raises LeaseLost when the job is no longer ours."""
        self.lease.keep()

    def commit(self) -> None:
        """Commit the work so far (a consistent point: a resumed job starts from here)."""
        self.lease.keep()
        self.tx.commit()

    def connection(self) -> api.Connection:
        """The organization's QBO connection; every call through it commits the work so far
        first (see qbo_sync_db.api)."""
        if self._connection is None:
            self._connection = api.Connection(
                self.plpy, self.tx, self.organization_id, before_call=self.keep_lease
            )
        return self._connection

    @property
    def progress(self) -> Progress:
        """The job's running counts, published on its queue row as it goes (see
        qbo_sync_db.progress)."""
        if self._progress is None:
            self._progress = Progress(self.plpy, self.job)
        return self._progress

    def summary(self, **counts: Any) -> dict[str, Any]:
        """A summary for the history, with what the connection did (calls, refreshes, pacing)."""
        result = dict(counts)
        if self._connection is not None:
            result["qbo_calls"] = self._connection.calls
            result["token_refreshes"] = self._connection.refreshes
            result["pacer"] = dict(self._connection.pacer.stats)
            if self._connection.retried:
                result["retried"] = list(self._connection.retried)
        return result


def run(plpy: Any, state_text: str) -> str:
    """The run step (see the module docstring); returns the loop's new state. Nothing escapes:
    a failure outside the handler (a lost connection to the catalog, a bug here) gives the job
    back with the reason and is reported as a failed step."""
    try:
        return _run(plpy, state_text)
    except Exception as exc:  # noqa: BLE001 - the loop around this step cannot catch anything
        return abandon(plpy, state_text, exc)


def abandon(plpy: Any, state_text: str, exc: BaseException) -> str:
    """The step failed outside the handler: roll back, give the job back (its attempt not
    counted) with the reason, report the failed step."""
    error = _described(plpy, exc)
    plpy.rollback()
    Transaction(plpy).pin(check_relations=False)  # worker_abandon checks them itself
    rows = db.execute(
        plpy, ABANDON, ["text", "text", "text"], [state_text, error["sqlstate"], error["message"]]
    )
    return str(rows[0]["state"])


def _described(plpy: Any, exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, plpy.SPIError):
        return _spi_error(exc)
    if isinstance(exc, plpy.Error):
        return _raised_error(exc)
    if isinstance(exc, QboSyncError):
        return api.describe(exc)
    return _bug(exc)


def _run(plpy: Any, state_text: str) -> str:
    state = json.loads(state_text)
    if not state.get("job"):
        return state_text
    tx = Transaction(plpy)
    try:
        state = _sql_state(plpy, START, ["text"], [json.dumps(state)])
    except plpy.SPIError as exc:
        tx.rollback()
        return _step_failed(plpy, state, sqlstate_of(exc), str(exc))
    if not state.get("job"):
        return json.dumps(state)  # the organization is busy: the job was given back
    tx.lock_timeout_ms = int(state.pop("lock_timeout_ms", tx.lock_timeout_ms))
    tx.commit()

    summary: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    stop = False
    context: JobContext | None = None
    try:
        handler = state.pop("handler", None)
        if handler is None:
            summary = _run_sql_handler(plpy, state["job"])
        else:
            context = _context(plpy, tx, state["job"])
            summary = _python_handler(handler)(context) or {}
    except plpy.spiexceptions.QueryCanceled as exc:
        # a statement timeout or a cancel request: recorded like any failure (and retried);
        # after a cancel request the worker stops
        error = _spi_error(exc)
        stop = True
    except plpy.SPIError as exc:
        error = _spi_error(exc)
    except plpy.Error as exc:
        # plpy.error() from the package's own code (raise_error: LeaseLost, a refused request)
        error = _raised_error(exc)
    except Exception as exc:  # noqa: BLE001 - a handler's bug must not stop the worker
        error = api.describe(exc) if isinstance(exc, QboSyncError) else _bug(exc)
    if error is not None:
        tx.rollback()
        if context is not None:
            summary = context.summary()
    try:
        state = _finish(plpy, state, summary, error)
    except plpy.SPIError as exc:
        # the outcome could not be written as it was (a lock held past the timeout, a summary
        # the history refused): the job's work is rolled back and the failure recorded instead
        tx.rollback()
        failure = _spi_error(exc)
        failure["message"] = "recording the job's outcome failed: " + failure["message"]
        try:
            state = _finish(plpy, state, {}, failure)
        except plpy.SPIError as again:
            tx.rollback()
            return _step_failed(plpy, state, sqlstate_of(again), str(again))
    if stop:
        state["stop"] = True
    return json.dumps(state)


def _finish(
    plpy: Any, state: dict[str, Any], summary: Any, error: dict[str, Any] | None
) -> dict[str, Any]:
    return _sql_state(
        plpy,
        FINISH,
        ["text", "text", "text", "text", "text"],
        [
            json.dumps(state),
            json.dumps(clean_summary(summary), default=str),
            error and error["sqlstate"],
            error and error["message"],
            error and error["intuit_tid"],
        ],
    )


def clean_summary(summary: Any) -> dict[str, Any]:
    """A handler's summary as the history can keep it: a JSON object whose counts are whole
    numbers (anything else under those keys is dropped, not allowed to fail the recording)."""
    if not isinstance(summary, dict):
        return {} if summary is None else {"result": summary}
    cleaned = dict(summary)
    for key in COUNTS:
        value = cleaned.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
            del cleaned[key]
    return cleaned


def _sql_state(plpy: Any, query: str, types: list[str], args: list[Any]) -> dict[str, Any]:
    return json.loads(db.execute(plpy, query, types, args)[0]["state"])


def _step_failed(plpy: Any, state: dict[str, Any], sqlstate: str, message: str) -> str:
    """The step failed as a whole (a lock held past its timeout, a replaced table): reported,
    and the loop goes on; the job keeps its lease and comes back."""
    return json.dumps(
        _sql_state(
            plpy, STEP_FAILED, ["text", "text", "text"], [json.dumps(state), sqlstate, message]
        )
    )


def _run_sql_handler(plpy: Any, job: dict[str, Any]) -> dict[str, Any]:
    rows = db.execute(plpy, RUN_SQL_HANDLER, ["text"], [json.dumps(job)])
    return json.loads(rows[0]["summary"])


def _python_handler(handler: str) -> Any:
    match = HANDLER.match(handler)
    if match is None:
        raise ValueError(
            f"qbo_sync.entity.handler {handler!r} is not module:function of qbo_sync_db"
        )
    module = importlib.import_module(match.group(1))
    return getattr(module, match.group(2))


def _context(plpy: Any, tx: Transaction, job: dict[str, Any]) -> JobContext:
    settings = db.execute(plpy, LEASE_SECONDS, [], [])[0]
    lease = LeaseKeeper(plpy, str(job["id"]), str(job["lease_id"]), float(settings["seconds"]))
    return JobContext(plpy, tx, job, lease, slice_seconds=float(settings["slice"]))


def sqlstate_of(exc: Any) -> str:
    """The SQLSTATE of a plpy.SPIError. PL/Python sets `sqlstate` only on the classes it knows;
    for the rest (our own QB and QS codes) it is in `spidata`, packed as PostgreSQL packs it."""
    known = getattr(exc, "sqlstate", None)
    if known:
        return str(known)
    spidata = getattr(exc, "spidata", None)
    if spidata and isinstance(spidata[0], int):
        code = spidata[0]
        return "".join(chr(((code >> (6 * i)) & 0x3F) + ord("0")) for i in range(5))
    return "XX000"


def _spi_error(exc: Any) -> dict[str, Any]:
    spidata = getattr(exc, "spidata", None)
    detail = (spidata[1] if spidata else None) or ""
    tid = INTUIT_TID.search(detail)
    return {
        "sqlstate": sqlstate_of(exc),
        "message": str(exc),
        "intuit_tid": tid.group(1) if tid else None,
    }


def _raised_error(exc: Any) -> dict[str, Any]:
    tid = INTUIT_TID.search(getattr(exc, "detail", None) or "")
    return {
        "sqlstate": getattr(exc, "sqlstate", None) or "XX000",
        "message": str(exc),
        "intuit_tid": tid.group(1) if tid else None,
    }


def _bug(exc: BaseException) -> dict[str, Any]:
    return {"sqlstate": "XX000", "message": f"{type(exc).__name__}: {exc}", "intuit_tid": None}
