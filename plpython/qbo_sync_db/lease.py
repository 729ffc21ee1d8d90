"""Keeping a running job's lease while it works (pgmq's set_vt, as qbo_sync.extend_lease).

A job is leased for queue.lease_seconds when it is claimed; a job that runs longer (a first pull
of a large company, page after page) calls `LeaseKeeper.keep()` between steps. The keeper extends
the lease once a third of it has passed, so a job that keeps calling never loses it, and it stops
the job with `LeaseLost` when the lease is already gone (reclaimed, requeued or cancelled), so no
more work is done for a job that is no longer this worker's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from qbo_sync_db import db
from qbo_sync_db.errors import QboSyncError, raise_error

EXTEND_LEASE = "SELECT qbo_sync.extend_lease($1, $2, $3) AS locked_until"


class LeaseLost(QboSyncError):
    """The job was taken back while it ran; its worker must stop working on it."""

    sqlstate = "QS003"


class LeaseKeeper:
    """Extends the lease of job `job_id` (held under `lease_id`) as the job goes."""

    def __init__(
        self,
        plpy: Any,
        job_id: str,
        lease_id: str,
        lease_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self.plpy = plpy
        self.job_id = job_id
        self.lease_id = lease_id
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.extended_at = clock()
        self.extensions = 0

    def due(self) -> bool:
        return self.clock() - self.extended_at >= self.lease_seconds / 3

    def keep(self) -> None:
        """Extend the lease when a third of it has passed; raise LeaseLost when it is gone."""
        if not self.due():
            return
        rows = db.execute(
            self.plpy,
            EXTEND_LEASE,
            ["uuid", "uuid", "numeric"],
            [self.job_id, self.lease_id, self.lease_seconds],
        )
        if not rows or rows[0]["locked_until"] is None:
            raise_error(
                self.plpy,
                LeaseLost(
                    f"lease lost: queue job {self.job_id} was taken back while it ran",
                    hint="it was reclaimed, requeued or cancelled; its new run does the work",
                ),
            )
        self.extended_at = self.clock()
        self.extensions += 1
