"""A running job's progress, published on its queue row (public.qbo_sync_queue.progress) while
it works, for `qbo-sync sync --wait` and anyone watching the queue.

What is published is small and bounded, a fixed set of keys:

* phase: "pull" or "push"; mode: the pull's mode ("full", "incremental", ...);
* read: objects read from QBO (a full pass: how far into QBO's list it is, which at the end is
  how many objects QBO has); total: how many objects QBO has, when a full pull knows it (the
  first page was all of them, or QBO counted them: qbo_sync_db.pull);
* written: rows inserted or updated here; sent, pushed, failed: push operations sent, accepted
  by QBO, refused or failed; held: rows held (waiting for what they reference or for a person).

The counters are the job's, over all its runs: a job that hands itself back between pages
(worker.job_slice_seconds) or is retried starts from what its earlier runs published (the queue
row it was claimed with), so the numbers never go back to zero while the job is not done.

`Progress.publish` is one UPDATE of the job's row (qbo_sync.publish_progress), made in the
transaction of the page or request it counts: it adds no commit, and a page rolled back takes
its progress with it.
"""

from __future__ import annotations

import json
from typing import Any

from qbo_sync_db import db

PUBLISH = "SELECT qbo_sync.publish_progress($1, $2, $3::jsonb) AS published"
#: counted over the job's runs (an earlier run's value is added to this run's)
COUNTERS = ("read", "written", "sent", "pushed", "failed", "held")


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class Progress:
    """The progress of one run of a job: this run's counters on top of the earlier runs'."""

    def __init__(self, plpy: Any, job: dict[str, Any]) -> None:
        self.plpy = plpy
        self.job_id = str(job["id"])
        self.lease_id = str(job["lease_id"])
        before = job.get("progress") if isinstance(job.get("progress"), dict) else {}
        #: what earlier runs of the job published
        self.before = {key: _count(before.get(key)) for key in COUNTERS}
        self.total: int | None = before.get("total") if _count(before.get("total")) else None
        #: this run's counters
        self.run = dict.fromkeys(COUNTERS, 0)
        #: a full pass's position (read counts from the start of the pass, not per run)
        self.read_in_pass: int | None = None
        self.phase: str | None = None
        self.mode: str | None = None

    def values(self) -> dict[str, Any]:
        """What is published: the job's counters, and the phase, mode and total."""
        out: dict[str, Any] = {key: self.before[key] + self.run[key] for key in COUNTERS}
        if self.read_in_pass is not None:
            out["read"] = max(self.read_in_pass, 0)
        out["phase"] = self.phase
        out["mode"] = self.mode
        out["total"] = self.total
        return {key: value for key, value in out.items() if value is not None}

    def publish(self, phase: str, mode: str | None = None, **run_counts: int) -> None:
        """Store the job's progress now: `run_counts` are this run's counters so far (keys of
        COUNTERS), replacing what this run published before."""
        self.phase = phase
        if mode is not None:
            self.mode = mode
        for key, value in run_counts.items():
            if key in COUNTERS:
                self.run[key] = _count(value)
        db.execute(
            self.plpy,
            PUBLISH,
            ["uuid", "uuid", "text"],
            [self.job_id, self.lease_id, json.dumps(self.values(), separators=(",", ":"))],
        )
