# ruff: noqa: F811 - the fixtures are imported and used as parameters
"""A connection in use for weeks, against the QBO simulator over HTTP: the token job running
every five minutes as pg_cron runs it, the worker running jobs that call QBO, the simulated clock
moved through the simulator's control surface (issue 7; the 30-day test makes the same call in
process, 8640 times).

The database's clock is real time and the simulator's is moved. Whenever the simulated clock
moves by Δ, the database's stored token times (access expiry, both refresh expiries, last
refresh) move back by Δ in the same step (qbo_jobs.advance), so both sides agree on how old
every token is. The pacer keeps real time: a simulated hour between two jobs is a few
milliseconds of it.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from tests.db.qbo_jobs import (  # noqa: F401 - fixtures
    REALM,
    TOKEN_PATH,
    advance,
    connect_realm,
    grant_refresh_tokens,
    logged_sim,
    rotations_implied,
    setting,
    sim_call,
    token_row,
)
from tests.db.test_qbo_calls import (  # noqa: F401 - fixtures
    outcome,
    probe,
    queue_probe,
    run_worker,
)
from tests.db.test_tokens import works

STEP = 300  # pg_cron runs the token job every five minutes


def token_job(conn) -> None:
    conn.execute("CALL qbo_sync.refresh_expiring_tokens()")


@pytest.mark.slow
def test_thirty_days_in_use_no_call_fails_for_an_expired_token_and_the_refresh_token_is_kept(
    conn, probe, logged_sim, setting
):
    """30 simulated days in steps of five minutes. Every step runs the token job; at random
    steps (one in twelve: hourly on average, before or after the token job) a probe job is
    queued and the worker runs it. The pacer's rate limits are off here (its real-time spacing
    would only slow the test: a simulated hour between jobs is milliseconds of real time); the
    simulator's own limits stay on, its windows moving with its clock."""
    days = 30
    sim = logged_sim
    setting("pacing.limits", {"per_minute": 0, "per_second": 0})
    connected = connect_realm(conn, sim)
    first_issued = sim.state.oauth.refresh[connected.refresh].issued
    rng = random.Random(7)
    stored_refresh = [connected.refresh]  # every value the database held, in order
    jobs = []
    for _ in range(days * 86400 // STEP):
        advance(conn, sim, STEP, over_http=False)
        answered = len(sim.log.answers)
        work = rng.random() < 1 / 12
        worker_first = work and rng.random() < 0.5
        if worker_first:
            jobs.append(queue_probe(conn, connected.org, calls=1))
            run_worker(conn)
        token_job(conn)
        if work and not worker_first:
            jobs.append(queue_probe(conn, connected.org, calls=1))
            run_worker(conn)
        if any(a.token for a in sim.log.answers[answered:]):
            row = token_row(conn, connected.org)
            # never lost: what the database holds is what QBO honours now
            assert row["is_active"], row
            assert row["refresh"] == grant_refresh_tokens(sim)[0]
            if row["refresh"] != stored_refresh[-1]:
                stored_refresh.append(row["refresh"])

    # every job completed, none needed a refresh of its own or a second attempt
    results = conn.execute(
        """SELECT q.status, h.summary FROM qbo_sync_queue AS q
             JOIN qbo_sync_history AS h ON h.queue_job_id = q.id
            WHERE q.id = ANY(%s)""",
        (jobs,),
    ).fetchall()
    assert len(results) == len(jobs) and len(jobs) > 600, (len(results), len(jobs))
    assert {status for status, _ in results} == {"completed"}
    for _, summary in results:
        assert summary["qbo_calls"] == 1 and summary["token_refreshes"] == 0, summary
        assert summary["pacer"]["decisions"] == 2 + summary["pacer"]["waits"], summary
        assert "retried" not in summary, summary

    # the simulator answered every call, and never with a 401 (nor a 429)
    api = sim.log.api()
    assert len(api) == len(jobs) and {a.status for a in api} == {200}
    # every refresh succeeded, one each time the token came within the refresh margin of its
    # end (every 45 minutes; by the token job, or by a job's prepare step when it ran first)
    refreshes = sim.log.token()
    assert {(a.status, a.error) for a in refreshes} == {(200, None)}
    margin = conn.execute("SELECT qbo_sync.setting_numeric('token.refresh_margin_seconds')")
    every = sim.cfg.access_token_ttl_s - float(margin.fetchone()[0])
    assert len(refreshes) >= days * 86400 // every - 1, len(refreshes)

    # the refresh token rotated as the simulator rotates it (a new value when the current one
    # is a day old), and the database kept each new value
    rotations = rotations_implied(sim, first_issued, [a.sim_at for a in refreshes])
    assert rotations >= days - 1
    current, issued = grant_refresh_tokens(sim)
    assert issued == rotations + 1
    assert len(stored_refresh) == len(set(stored_refresh)) == rotations + 1
    assert stored_refresh[-1] == current

    # still connected, and the stored refresh token works
    assert token_row(conn, connected.org)["is_active"]
    assert conn.execute("SELECT qbo_sync.token_refresh(%s, true)", (connected.org,)).fetchone()[0][
        "refreshed"
    ]
    assert works(sim, token_row(conn, connected.org)["access"])


def test_two_workers_and_the_token_job_racing_for_one_connection_never_lose_the_refresh_token(
    conn, connect, probe, logged_sim, setting
):
    """Two worker loops and the token job run on their own connections, as pg_cron runs them,
    while the clock moves ten minutes every 40 ms for 2.5 simulated days and a probe job is
    queued at every move. The refresh margin is raised to 50 minutes, so both the token job and
    every job's prepare step find the token due after each move and race to refresh it (only
    one job of the organization runs at a time, but claims, refreshes and the token job do
    not wait for each other); two of those refreshes are rotations."""
    sim = logged_sim
    setting("pacing.limits", {"per_minute": 0, "per_second": 0})
    setting("token.refresh_margin_seconds", 3000)
    setting("worker.idle_sleep_seconds", 0.01)
    setting("queue.busy_retry_seconds", 0.02)
    connected = connect_realm(conn, sim)
    first_issued = sim.state.oauth.refresh[connected.refresh].issued
    stop = threading.Event()
    failures: list[BaseException] = []

    def looping(body, connection) -> threading.Thread:
        def run() -> None:
            try:
                while not stop.is_set():
                    body(connection)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                failures.append(exc)

        return threading.Thread(target=run, daemon=True)

    def token_job_loop(connection) -> None:
        token_job(connection)
        time.sleep(0.005)

    threads = [
        looping(lambda c: c.execute("CALL qbo_sync.worker(1, NULL, false)"), connect()),
        looping(lambda c: c.execute("CALL qbo_sync.worker(1, NULL, false)"), connect()),
        looping(token_job_loop, connect()),
    ]
    for thread in threads:
        thread.start()
    jobs: set = set()
    tick = 600
    next_tick = time.monotonic()
    for _ in range(int(2.5 * 86400) // tick):
        advance(conn, sim, tick)
        jobs.add(queue_probe(conn, connected.org, calls=1))
        next_tick += 0.04
        time.sleep(max(0.0, next_tick - time.monotonic()))
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not failures, failures
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and conn.execute(
            "SELECT count(*) FROM qbo_sync_queue WHERE id = ANY(%s) AND status IN ('pending', 'processing')",
            (list(jobs),),
        ).fetchone()[0]
    ):
        run_worker(conn, 5)

    # every job completed, and no run of any job failed (no QB401, no QB410)
    statuses = conn.execute(
        "SELECT status, count(*) FROM qbo_sync_queue WHERE id = ANY(%s) GROUP BY status",
        (list(jobs),),
    ).fetchall()
    assert statuses == [("completed", len(jobs))], statuses
    runs = conn.execute(
        """SELECT status, error_summary FROM qbo_sync_history
            WHERE organization_id = %s AND queue_job_id IS NOT NULL""",
        (connected.org,),
    ).fetchall()
    assert len(runs) == len(jobs) and {status for status, _ in runs} == {"completed"}, runs

    # QBO never refused a token: no 401 to a call, no invalid_grant to a refresh
    api = sim.log.api()
    assert len(api) == len(jobs) and {a.status for a in api} == {200}
    refreshes = sim.log.token()
    assert {(a.status, a.error) for a in refreshes} == {(200, None)}
    assert len(refreshes) >= len(jobs) // 2  # the token was due after nearly every move

    # the rotations happened as the simulator's rule says, and the database holds the current
    # value: refreshing with it works, and the connection is active
    current, issued = grant_refresh_tokens(sim)
    rotations = rotations_implied(sim, first_issued, [a.sim_at for a in refreshes])
    assert rotations >= 2 and issued == rotations + 1
    row = token_row(conn, connected.org)
    assert row["is_active"] and row["refresh"] == current
    assert conn.execute("SELECT qbo_sync.token_refresh(%s, true)", (connected.org,)).fetchone()[0][
        "refreshed"
    ]
    assert works(sim, token_row(conn, connected.org)["access"])


def job_runs(conn, job) -> list[tuple[str, str | None]]:
    """(status, error_summary) of every run of the job, oldest first."""
    return conn.execute(
        """SELECT status, error_summary FROM qbo_sync_history
            WHERE queue_job_id = %s ORDER BY completed_at, id""",
        (job,),
    ).fetchall()


def test_a_revoked_refresh_token_ends_the_connection_in_the_token_jobs_first_due_cycle(
    conn, probe, logged_sim
):
    """The company disconnects the app (its grant revoked at QBO) twenty minutes into the access
    token's hour. QBO tells nobody: the token job learns it from the token endpoint, so the
    connection ends in the first five-minute cycle that refreshes it (the token within
    token.refresh_margin_seconds of its end), with invalid_grant as the reason. A job queued
    afterwards fails at once with QB410, without calling QBO, and is not retried; the token job
    leaves the ended connection alone."""
    sim = logged_sim
    connected = connect_realm(conn, sim)
    for _ in range(4):
        advance(conn, sim, STEP)
        token_job(conn)
    assert sim.log.token() == []  # not due yet
    sim_call(sim, "POST", "tokens/revoke", {"realm_id": REALM})

    cycles = 0
    while token_row(conn, connected.org)["is_active"]:
        assert cycles < 12, "still active an hour after the revoke"
        advance(conn, sim, STEP)
        due = conn.execute(
            """SELECT qbo_token_expires_at < now() + make_interval(
                          secs => qbo_sync.setting_numeric('token.refresh_margin_seconds')::float8)
                 FROM qbo_connection WHERE organization_id = %s""",
            (connected.org,),
        ).fetchone()[0]
        token_job(conn)
        cycles += 1
        # the cycle that finds the token due ends the connection; no earlier one asks QBO
        assert token_row(conn, connected.org)["is_active"] is not due
    row = token_row(conn, connected.org)
    assert (
        row["inactive_reason"].startswith("invalid_grant") and "reconnect" in row["inactive_reason"]
    )
    assert [(a.status, a.error) for a in sim.log.token()] == [(400, "invalid_grant")]
    assert row["refresh"] == connected.refresh  # kept as it was, for whoever looks into it

    job = queue_probe(conn, connected.org, calls=1)
    run_worker(conn)
    result = outcome(conn, job)
    assert (result["status"], result["last_error_code"], result["attempts"]) == (
        "failed",
        "QB410",
        1,
    )
    assert "not active: invalid_grant" in result["last_error"]
    assert job_runs(conn, job) == [("failed", result["error_summary"])]
    assert "not retryable" in result["error_summary"]
    for _ in range(3):
        advance(conn, sim, STEP)
        token_job(conn)
    assert sim.log.api() == [] and len(sim.log.token()) == 1  # nobody called QBO again


def test_the_token_endpoint_down_for_an_hour_keeps_the_connection_and_it_recovers_by_itself(
    conn, probe, logged_sim
):
    """The token endpoint answers 503 from the 40th to the 100th minute of the access token's
    life (it expires at 60). Every five minutes the token job runs and the worker runs what is
    due; every ten minutes a probe job is queued (as the scheduled syncs queue them). Waiting
    jobs' backoff passes with the clock (their run_at moves back with the token times).

    Throughout: the connection stays active, the failure is noted (last_refresh_error, one count
    per refused refresh), the refresh token is kept. Jobs run while the token still works
    complete; jobs that come up after it expired are given back to wait for the token endpoint,
    their attempts not counted (so an outage of any length fails none of them), and QBO never
    sees the expired token. The first cycle after the endpoint is back refreshes, and the jobs
    still waiting complete in that cycle's worker run, with nobody doing anything."""
    sim = logged_sim
    connected = connect_realm(conn, sim)
    jobs: dict = {}  # job -> minute queued
    for minute in range(STEP // 60, 125, STEP // 60):
        advance(conn, sim, STEP, waiting_jobs=True)
        if minute == 40:
            sim_call(
                sim,
                "POST",
                "faults",
                {"next": [{"kind": "503", "path_contains": TOKEN_PATH, "times": 10000}]},
            )
        if minute == 100:
            sim_call(sim, "DELETE", "faults")
            back = sim.state.clock.now()
        token_job(conn)
        if minute % 10 == 0:
            # a job queued while an identical one waits is folded into it: keep the first minute
            jobs.setdefault(queue_probe(conn, connected.org, calls=1, minute=minute), minute)
        run_worker(conn)
        row = token_row(conn, connected.org)
        assert row["is_active"], (minute, row)
        assert row["refresh"] == connected.refresh or minute >= 100  # nothing lost meanwhile
        if 45 <= minute < 100:
            refused = [a for a in sim.log.token() if a.status == 503]
            assert row["last_refresh_error"].startswith("token refresh failed"), row
            assert row["refresh_failure_count"] == len(refused) > 0
            assert sim.log.token() == refused  # the endpoint answered nothing else
        if 60 < minute < 100:
            waiting = conn.execute(
                "SELECT status, attempts, last_error FROM qbo_sync_queue"
                " WHERE id = ANY(%s) AND status <> 'completed'",
                (list(jobs),),
            ).fetchall()
            assert waiting and all(
                status == "pending"
                and attempts == 0
                and error.startswith("waiting for the token endpoint: token refresh failed")
                and "503" in error
                for status, attempts, error in waiting
            ), (minute, waiting)
        if minute == 100:
            # the endpoint is back: this cycle refreshed, and every job left waiting completed
            assert (row["last_refresh_error"], row["refresh_failure_count"]) == (None, 0)
            assert row["expires_in"] > 3000
            assert (
                conn.execute(
                    "SELECT count(*) FROM qbo_sync_queue WHERE id = ANY(%s) AND status = 'pending'",
                    (list(jobs),),
                ).fetchone()[0]
                == 0
            )

    current, _ = grant_refresh_tokens(sim)
    assert token_row(conn, connected.org)["refresh"] == current
    assert works(sim, token_row(conn, connected.org)["access"])
    # the token job and the jobs' own refresh attempts met the 503s; none answered invalid_grant
    assert all(a.error is None for a in sim.log.token())
    waited = []
    for job, queued in jobs.items():
        runs = job_runs(conn, job)
        # every job ran once, and completed: the outage cost none of them an attempt
        assert runs == [("completed", None)], (queued, runs)
        assert outcome(conn, job)["attempts"] == 1
        if 60 <= queued < 100:
            waited.append(job)
    assert waited  # the outage did meet jobs
    # and QBO never refused a call: no job sent the expired token
    assert [a for a in sim.log.api() if a.status != 200] == []
    assert back  # the endpoint came back within the test
