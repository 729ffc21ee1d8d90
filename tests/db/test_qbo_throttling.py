# ruff: noqa: F811 - the fixtures are imported and used as parameters
"""QBO's throttling and server errors met by jobs through the worker's real path, against the
QBO simulator over HTTP with its limits on (issue 7): the realm's shared pacer keeps a job
within QBO's limits, a 429 stops the realm for a backoff that every 429 is counted in, and 5xx
bursts are retried until every call is answered or fails with its error kept.

Times here are real: the pacer, the transport's retries and the simulator's rate windows all
run on real time (the simulated clock is not moved).
"""

from __future__ import annotations

import re
import threading
import time

from tests.db.qbo_jobs import (  # noqa: F401 - fixtures
    REALM,
    connect_realm,
    logged_sim,
    setting,
    sim_call,
)
from tests.db.test_qbo_calls import (  # noqa: F401 - fixtures
    counters,
    outcome,
    probe,
    queue_probe,
    run_worker,
)

TID = re.compile(r"1-[0-9a-f]{8}-[0-9a-f]{24}")


def pacer_state(conn, realm: str = REALM) -> dict:
    return conn.execute(
        "SELECT state FROM qbo_sync.pacer WHERE realm_id = %s", (realm,)
    ).fetchone()[0]


def most_in_any_second(times: list[float]) -> int:
    """The most of these arrival times (seconds) in any one-second window."""
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


def test_one_429_late_in_a_job_backs_the_realm_off_at_the_first_level(
    conn, connect, probe, logged_sim
):
    """QBO throttles once, after ten calls of a job (its minute budget is used up, then free
    again). That is the realm's first 429: its backoff is the first level (at most
    backoff_base_seconds, 2 s), whatever the job did before, and the job completes in the same
    run."""
    sim = logged_sim
    connected = connect_realm(conn, sim)
    sim_call(sim, "PATCH", "config", {"per_minute": 10})
    job = queue_probe(conn, connected.org, calls=12)
    worker = threading.Thread(target=run_worker, args=(connect(),))
    worker.start()
    deadline = time.monotonic() + 60
    while not any(a.status == 429 for a in sim.log.api()) and time.monotonic() < deadline:
        time.sleep(0.005)
    sim_call(sim, "PATCH", "config", {"per_minute": 500})  # the budget is free again
    worker.join(120)
    assert not worker.is_alive()

    result = outcome(conn, job)
    assert result["status"] == "completed", result
    assert result["summary"]["pacer"]["throttled"] == 1 == counters(sim)["throttled"]
    backoff = pacer_state(conn)["backoff"]
    assert backoff["level"] == 1
    assert (backoff["until"] - backoff["since"]) / 1e6 <= 2.0, backoff
    api = sim.log.api()
    assert [a.status for a in api] == [200] * 10 + [429] + [200] * 2
    # the throttled call was sent again after the transport's wait for a first 429 (1 to 2 s)
    # and the realm's backoff, and no later than both allow
    gap = api[11].arrived - api[10].arrived
    assert 1.0 <= gap < 4.0, gap
