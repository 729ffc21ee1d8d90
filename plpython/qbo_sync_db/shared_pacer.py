"""The pacer every backend shares: qbo_sync_db.pacing's arithmetic on the realm's row of
qbo_sync.pacer, as the transport's `Pacer` (docs/pacing.md, "What the database side must do").

Each decision is a transaction of its own: lock the row (under pacing.lock_timeout_ms; a busy
row is tried again, it is never an error), read the database server's clock after the lock,
decide, write, commit. The caller's work so far is committed first (the step that runs this
commits as it goes: see qbo_sync_db.txn), so a reservation is visible to every backend before
its request leaves, and a 429's backoff outlives the job that met it.

A wait longer than pacing.max_wait_seconds (a long backoff, a Retry-After) is not slept through:
the job is handed back to the queue with QB429, whose own backoff waits instead.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

from qbo_sync_db import client, db, pacing
from qbo_sync_db.errors import QboApiError, QboThrottled
from qbo_sync_db.txn import Transaction

LOCK_ROW = """
SELECT p.state::text AS state
  FROM qbo_sync.pacer AS p
 WHERE p.realm_id = $1 AND p.app = $2
   FOR UPDATE"""
CREATE_ROW = """
INSERT INTO qbo_sync.pacer (realm_id, app) VALUES ($1, $2)
ON CONFLICT (realm_id, app) DO NOTHING"""
CLOCK = "SELECT pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) AS now"
STORE = """
UPDATE qbo_sync.pacer AS p
   SET state = $3::jsonb, updated_at = pg_catalog.clock_timestamp()
 WHERE p.realm_id = $1 AND p.app = $2"""

#: how long to wait before asking again when another backend holds the row
BUSY_RETRY_SECONDS = (0.002, 0.02)


class SharedPacer:
    """Paces the calls of one realm and app across every backend (see the module docstring)."""

    def __init__(
        self,
        plpy: Any,
        tx: Transaction,
        realm_id: str,
        app: str,
        limits: pacing.Limits | dict[str, Any] | None = None,
        *,
        max_wait_seconds: float = 30.0,
        lock_timeout_ms: int = 200,
        linger_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.plpy = plpy
        self.tx = tx
        self.key = [realm_id, app]
        self.limits = pacing.as_limits(limits)
        self.max_wait_seconds = max_wait_seconds
        self.lock_timeout_ms = lock_timeout_ms
        self.linger_seconds = linger_seconds
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.slot: int | None = None
        #: called before every attempt is paced (the job's lease keeper)
        self.before_attempt: Callable[[], None] | None = None
        #: time.monotonic() when the latest decision read the clock (a wait runs from then)
        self.decided_at = 0.0
        #: the request being sent and how many times it was tried (the transport resends the
        #: same object): after a 429 that count is a floor for the backoff level, so it must not
        #: count the job's earlier, answered calls
        self.request: client.Request | None = None
        self.attempts = 0
        #: what the pacer did, for the job's summary and the benchmark
        self.stats = {"decisions": 0, "waits": 0, "waited_seconds": 0.0, "busy": 0, "throttled": 0}

    # ------------------------------------------------------------------ the transport's hooks

    def before(self, request: client.Request) -> None:
        if request.kind == "oauth":
            return
        if self.before_attempt is not None:
            self.before_attempt()  # e.g. keep the job's lease: retries can take minutes
        if request is not self.request:
            self.request, self.attempts = request, 0
        self.attempts += 1
        waited = 0.0
        while True:
            decision = self._decide(
                lambda state, now: pacing.reserve(state, now, request.kind, self.limits)
            )
            if decision.go:
                self.slot = decision.slot
                return
            if waited + decision.wait_seconds > self.max_wait_seconds:
                raise QboThrottled(
                    f"the QBO budget of realm {self.key[0]} is not free for "
                    f"{decision.wait_seconds:.1f} s ({decision.reason}); back to the queue",
                    hint="a 429 backoff or a Retry-After is running; the job is retried after it",
                )
            self.stats["waits"] += 1
            self.stats["waited_seconds"] += decision.wait_seconds
            # the wait runs from the clock reading, not from the end of the commit after it:
            # sleeping all of it after the commit woke every waiter late by its own commit (a
            # WAL flush), and a spacing nobody used is never made up (bench/bench_pacer_db.py)
            late = time.monotonic() - self.decided_at
            self.sleep(max(0.0, decision.wait_seconds - late))
            waited += decision.wait_seconds

    def after(self, request: client.Request, status: int | None, error: QboApiError | None) -> None:
        if request.kind == "oauth":
            return
        slot, self.slot = self.slot, None
        if status == 429:
            self.stats["throttled"] += 1
            retry_after = error.retry_after if error is not None else None
            self._decide(
                lambda state, now: (
                    None,
                    pacing.throttled(
                        state, now, retry_after, self.attempts, self.limits, slot=slot
                    ),
                )
            )
        elif status is None:
            # no answer: QBO may still be working on it, so it keeps counting a while
            self._decide(
                lambda state, now: (
                    None,
                    pacing.release(state, now, slot, self.linger_seconds, self.limits),
                )
            )
        else:
            self._decide(
                lambda state, now: (None, pacing.release(state, now, slot, 0, self.limits))
            )

    # ------------------------------------------------------------------ one locked decision

    def _decide(self, decide: Callable[[Any, Any], tuple[Any, dict[str, Any]]]) -> Any:
        """Run `decide(state, now)` on the locked row in a transaction of its own and commit
        the new state; returns the decision. A busy row is tried again after a short pause."""
        # the caller's work so far: no lock of ours is held while we wait (the decision's own
        # transaction touches only qbo_sync.pacer, so it skips the check of public's tables)
        self.tx.commit(self.lock_timeout_ms, check_relations=False)
        busy_since = time.monotonic()
        while True:
            try:
                rows = db.execute(self.plpy, LOCK_ROW, ["text", "text"], self.key)
                if not rows:
                    db.execute(self.plpy, CREATE_ROW, ["text", "text"], self.key)
                    rows = db.execute(self.plpy, LOCK_ROW, ["text", "text"], self.key)
            except self.plpy.spiexceptions.LockNotAvailable:
                self.tx.rollback(self.lock_timeout_ms, check_relations=False)
                self.stats["busy"] += 1
                if time.monotonic() - busy_since > self.max_wait_seconds:
                    # held far longer than any decision takes (an operator's open lock, a
                    # table rewrite): the job goes back to the queue rather than spin
                    raise QboThrottled(
                        f"the pacing row of realm {self.key[0]} stayed locked for "
                        f"{self.max_wait_seconds:.0f} s; the job waits in the queue",
                        hint="some session holds qbo_sync.pacer's row: see pg_locks",
                    ) from None
                self.sleep(self.rng.uniform(*BUSY_RETRY_SECONDS))
                continue
            state = json.loads(rows[0]["state"])
            now = db.execute(self.plpy, CLOCK, [], [])[0]["now"]
            self.decided_at = time.monotonic()
            decision, new_state = decide(state, now)
            if new_state != state:
                db.execute(
                    self.plpy, STORE, ["text", "text", "text"], [*self.key, json.dumps(new_state)]
                )
            self.stats["decisions"] += 1
            self.tx.commit()
            return decision
