"""What the `qbo-sync` command does in the database, apart from how it is shown: find an
organization, connect it, queue syncs and follow them, read the status, list and settle
conflicts and failed records. Every function takes an open autocommit connection and goes
through qbo-sync's SQL API (the same functions an application calls)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import requests
from psycopg.rows import dict_row

#: in dependency order: customers and items before invoices, invoices before payments
ENTITIES = ("customers", "items", "invoices", "payments")
DIRECTIONS = ("pull", "push", "both")
TERMINAL = ("completed", "failed", "cancelled")


class OperationError(Exception):
    """A problem the user can fix; the message says what to do."""


def rows(conn: psycopg.Connection, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else []


def find_organization(conn: psycopg.Connection, org: str, *, create: bool = False) -> uuid.UUID:
    """The organization named by `org`: its id, or its exact name (created when `create`)."""
    try:
        wanted = uuid.UUID(org)
    except ValueError:
        wanted = None
    if wanted is not None:
        act_for(conn, wanted)  # the application role sees its organization's row only then
        if rows(conn, "SELECT 1 FROM organizations WHERE id = %s", (wanted,)):
            return wanted
        raise OperationError(f"no organization has the id {org}: check --org")
    found = rows(conn, "SELECT id FROM organizations WHERE name = %s ORDER BY created_at", (org,))
    if len(found) == 1:
        return found[0]["id"]
    if len(found) > 1:
        raise OperationError(f"{len(found)} organizations are named {org!r}: pass --org by its id")
    if not create:
        raise OperationError(
            f"no organization is named {org!r}: pass its id, or add --create to create it"
        )
    return rows(conn, "INSERT INTO organizations (name) VALUES (%s) RETURNING id", (org,))[0]["id"]


def act_for(conn: psycopg.Connection, org: uuid.UUID) -> None:
    """Name the organization this session acts for (the application role's row-level security
    and the SQL API read it; qbo-sync's owner may act for any)."""
    conn.execute("SELECT set_config('qbo_sync.organization_id', %s, false)", (str(org),))


# ------------------------------------------------------------------ connect


@dataclass
class Connected:
    organization_id: uuid.UUID
    realm_id: str | None
    url: str | None = None  # the address a person must open (real QBO)


def register_with_simulator(
    simulator_url: str, client_id: str, client_secret: str, redirect_uri: str
) -> None:
    """Make the simulator know the database's Intuit app (its control API; idempotent)."""
    try:
        answer = requests.post(
            simulator_url.rstrip("/") + "/_sim/apps",
            json={
                "client_id": client_id,
                "client_secret": client_secret,
                "redirect_uris": [redirect_uri],
            },
            timeout=30,
        )
    except requests.RequestException as exc:
        raise OperationError(
            f"the simulator at {simulator_url} does not answer ({type(exc).__name__}): "
            "start it with `qbo-sync simulator` or check --simulator"
        ) from None
    if answer.status_code != 201:
        raise OperationError(f"the simulator refused to register the app: {answer.text[:200]}")


def connect_simulator(
    conn: psycopg.Connection, org: uuid.UUID, simulator_url: str, redirect_uri: str
) -> Connected:
    """The whole OAuth flow against the simulator, which consents at once: initiate, follow the
    consent page's redirect as a browser would, and complete it with its code and state."""
    act_for(conn, org)
    url = rows(
        conn,
        "SELECT qbo_oauth_initiate(%s, %s, 'simulator', %s) AS url",
        (org, redirect_uri, simulator_url.rstrip("/")),
    )[0]["url"]
    try:
        answer = requests.get(url, allow_redirects=False, timeout=30)
    except requests.RequestException as exc:
        raise OperationError(
            f"the simulator at {simulator_url} does not answer ({type(exc).__name__}): "
            "start it with `qbo-sync simulator` or check --simulator"
        ) from None
    location = answer.headers.get("Location")
    if answer.status_code not in (302, 303) or not location:
        raise OperationError(f"the simulator refused the consent (HTTP {answer.status_code})")
    query = parse_qs(urlsplit(location).query)
    if "error" in query:
        raise OperationError(f"the simulator refused the consent: {query['error'][0]}")
    code, state, realm = (query.get(k, [""])[0] for k in ("code", "state", "realmId"))
    rows(conn, "SELECT qbo_oauth_callback(%s, %s, %s)", (code, state, realm))
    return Connected(org, realm)


def start_connect(
    conn: psycopg.Connection, org: uuid.UUID, redirect_uri: str, environment: str
) -> Connected:
    """The address a person opens to connect `org` to real QBO; the listener's /oauth/callback
    completes the flow when QuickBooks sends them back."""
    act_for(conn, org)
    url = rows(
        conn,
        "SELECT qbo_oauth_initiate(%s, %s, %s) AS url",
        (org, redirect_uri, environment),
    )[0]["url"]
    return Connected(org, None, url)


def wait_connected(
    conn: psycopg.Connection, org: uuid.UUID, since: float, timeout: float
) -> str | None:
    """The realm `org` got connected to after `since` (epoch seconds), waiting up to `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = rows(
            conn,
            "SELECT realm_id FROM qbo_connection WHERE organization_id = %s AND is_active"
            " AND connected_at >= to_timestamp(%s)",
            (org, since),
        )
        if found:
            return found[0]["realm_id"]
        if time.monotonic() >= deadline:
            return None
        time.sleep(1)


# ------------------------------------------------------------------ sync


def queue_sync(
    conn: psycopg.Connection,
    org: uuid.UUID,
    entities: Sequence[str],
    direction: str,
    priority: str,
) -> dict[str, uuid.UUID]:
    """Queue one sync per entity (in dependency order) through trigger_qbo_sync."""
    act_for(conn, org)
    order = [e for e in ENTITIES if e in entities]
    return {
        entity: rows(
            conn,
            "SELECT trigger_qbo_sync(%s, %s, %s, %s) AS job",
            (org, entity, direction, priority),
        )[0]["job"]
        for entity in order
    }


@dataclass
class JobProgress:
    entity: str
    job_id: uuid.UUID
    status: str = "pending"
    attempts: int = 0
    #: the summed counts of the job's finished runs (qbo_sync_history)
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    intuit_tid: str | None = None
    #: the job's running counts as its worker published them while it ran
    #: (qbo_sync_queue.progress: phase, mode, read, total, written, sent, pushed, failed, held)
    progress: dict[str, Any] = field(default_factory=dict)
    organization_id: uuid.UUID | None = None
    #: why each of its failed runs failed (with intuit_tid), oldest first
    failures: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


def job_progress(conn: psycopg.Connection, jobs: dict[str, uuid.UUID]) -> list[JobProgress]:
    """Where each job stands: its running counts (published by the worker after every page or
    request while it runs), and the counts of its finished runs (a long job runs in slices).
    Read through the queue's row-level security: a role confined to its organization finds
    another organization's job "gone"."""
    found = {
        r["id"]: r
        for r in rows(
            conn,
            """SELECT q.id, q.organization_id, q.status, q.attempts, q.last_error, q.progress,
                      (SELECT jsonb_object_agg(k, s) FROM (
                           SELECT key AS k, sum(value::numeric) AS s
                             FROM public.qbo_sync_history AS h, jsonb_each_text(h.summary)
                            WHERE h.queue_job_id = q.id AND value ~ '^[0-9]+$'
                            GROUP BY key) AS sums) AS counts,
                      (SELECT h.intuit_tid FROM public.qbo_sync_history AS h
                        WHERE h.queue_job_id = q.id AND h.intuit_tid IS NOT NULL
                        ORDER BY h.completed_at DESC LIMIT 1) AS intuit_tid,
                      ARRAY(SELECT concat_ws(' ', h.error_summary,
                                             '(intuit_tid ' || h.intuit_tid || ')')
                              FROM public.qbo_sync_history AS h
                             WHERE h.queue_job_id = q.id AND h.status = 'failed'
                             ORDER BY h.completed_at LIMIT 20) AS failures
                 FROM public.qbo_sync_queue AS q WHERE q.id = ANY (%s)""",
            (list(jobs.values()),),
        )
    }
    out = []
    for entity, job_id in jobs.items():
        r = found.get(job_id)
        if r is None:
            out.append(JobProgress(entity, job_id, "gone"))
            continue
        counts = {k: int(v) for k, v in (r["counts"] or {}).items()}
        out.append(
            JobProgress(
                entity,
                job_id,
                r["status"],
                r["attempts"],
                counts,
                r["last_error"],
                r["intuit_tid"],
                r["progress"] or {},
                r["organization_id"],
                list(r["failures"] or []),
            )
        )
    return out


def record_problems(
    conn: psycopg.Connection, org: uuid.UUID, entities: Sequence[str]
) -> list[dict[str, Any]]:
    """The records of `org`'s `entities` that did not sync: QBO refused them (error) or they wait
    for a person (conflict), with QBO's code, message and intuit_tid (qbo_sync_record_status)."""
    return rows(
        conn,
        """SELECT r.entity, r.record_id, r.qbo_id, r.state, r.error_class, r.error_code,
                  r.error_message, r.intuit_tid, r.attempts
             FROM public.qbo_sync_record_status AS r
            WHERE r.organization_id = %s AND r.entity = ANY (%s)
              AND r.state IN ('error', 'conflict')
            ORDER BY r.entity, r.record_id LIMIT 1000""",
        (org, list(entities)),
    )


def follow(
    conn: psycopg.Connection, jobs: dict[str, uuid.UUID], timeout: float, poll: float = 0.5
) -> Iterator[list[JobProgress]]:
    """The jobs' progress every `poll` s until all are done; raises OperationError when no
    worker took them within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        progress = job_progress(conn, jobs)
        yield progress
        if all(p.done or p.status == "gone" for p in progress):
            return
        if time.monotonic() >= deadline:
            waiting = [p.entity for p in progress if not p.done]
            raise OperationError(
                f"not done within {timeout:g} s ({', '.join(waiting)} still "
                f"{'/'.join(sorted({p.status for p in progress if not p.done}))}): is the "
                "worker running? pg_cron runs it every minute (job process-qbo-sync-queue); "
                "qbo-sync status shows the queue"
            )
        time.sleep(poll)


# ------------------------------------------------------------------ status


def status(conn: psycopg.Connection, org: uuid.UUID | None) -> dict[str, Any]:
    """Everything `qbo-sync status` shows, as plain data."""
    where, params = ("WHERE s.organization_id = %s", (org,)) if org else ("", ())
    organizations = rows(
        conn,
        f"""SELECT s.organization_id, s.organization_name, s.realm_id, s.environment,
                   s.is_active, s.inactive_reason, s.token_status,
                   s.qbo_token_expires_at - now() AS access_token_left,
                   s.qbo_refresh_token_expires_at - now() AS refresh_token_left,
                   s.reconnect_by, s.token_warning, s.pending_jobs, s.processing_jobs,
                   s.failed_jobs, s.last_successful_sync_at, s.last_sync_status
              FROM qbo_sync_status AS s {where} ORDER BY s.organization_name""",
        params,
    )
    history_where = "WHERE h.organization_id = %s" if org else ""
    history = rows(
        conn,
        f"""SELECT h.completed_at, o.name AS organization_name, h.entity_types, h.sync_type,
                   h.status, h.entity_count, h.success_count, h.failure_count,
                   h.error_summary, h.intuit_tid
              FROM qbo_sync_history AS h
              LEFT JOIN organizations AS o ON o.id = h.organization_id
              {history_where}
             ORDER BY h.completed_at DESC NULLS LAST LIMIT 10""",
        params,
    )
    return {
        "organizations": organizations,
        "history": history,
        "attention": attention(conn, org),
    }


def attention(conn: psycopg.Connection, org: uuid.UUID | None) -> list[dict[str, Any]]:
    """What needs a person: failed jobs, records in error, held or in conflict, inactive
    connections, drift the audit found."""
    params = (org, org)
    found: list[dict[str, Any]] = []
    for r in rows(
        conn,
        """SELECT o.name, q.sync_endpoint, q.direction, q.last_error, q.id
             FROM qbo_sync_queue AS q JOIN organizations AS o ON o.id = q.organization_id
            WHERE q.status = 'failed' AND (%s::uuid IS NULL OR q.organization_id = %s)
            ORDER BY q.updated_at DESC LIMIT 20""",
        params,
    ):
        found.append(
            {
                "what": "failed job",
                "organization": r["name"],
                "detail": f"{r['sync_endpoint']} {r['direction']}: {r['last_error']}",
                "next": f"qbo-sync sync --org {r['name']!r} --entities {r['sync_endpoint']}",
            }
        )
    if has_relation(conn, "public.qbo_sync_record_counts"):
        for r in rows(
            conn,
            """SELECT o.name, c.entity, c.state, c.records
                 FROM qbo_sync_record_counts AS c
                 JOIN organizations AS o ON o.id = c.organization_id
                WHERE c.state IN ('error', 'held', 'conflict')
                  AND (%s::uuid IS NULL OR c.organization_id = %s)
                ORDER BY o.name, c.entity, c.state""",
            params,
        ):
            found.append(
                {
                    "what": f"{r['state']} records",
                    "organization": r["name"],
                    "detail": f"{r['records']} {r['entity']}",
                    "next": "qbo-sync conflicts"
                    if r["state"] == "conflict"
                    else "qbo-sync records --failed",
                }
            )
    for r in rows(
        conn,
        """SELECT o.name, c.inactive_reason FROM qbo_connection AS c
             JOIN organizations AS o ON o.id = c.organization_id
            WHERE NOT c.is_active AND (%s::uuid IS NULL OR c.organization_id = %s)""",
        params,
    ):
        found.append(
            {
                "what": "inactive connection",
                "organization": r["name"],
                "detail": r["inactive_reason"] or "",
                "next": f"qbo-sync connect --org {r['name']!r}",
            }
        )
    if has_relation(conn, "public.qbo_sync_drift"):
        for r in rows(
            conn,
            """SELECT DISTINCT ON (d.organization_id, d.entity) o.name, d.entity, d.drifted,
                      d.qbo_count, d.local_count, d.checked_at
                 FROM qbo_sync_drift AS d JOIN organizations AS o ON o.id = d.organization_id
                WHERE (%s::uuid IS NULL OR d.organization_id = %s)
                ORDER BY d.organization_id, d.entity, d.checked_at DESC""",
            params,
        ):
            if r["drifted"]:
                found.append(
                    {
                        "what": "drift",
                        "organization": r["name"],
                        "detail": f"{r['entity']}: {r['qbo_count']} in QBO, "
                        f"{r['local_count']} here",
                        "next": "a repair pull was queued; qbo-sync status again later",
                    }
                )
    return found


def has_relation(conn: psycopg.Connection, name: str) -> bool:
    return bool(rows(conn, "SELECT to_regclass(%s) IS NOT NULL AS ok", (name,))[0]["ok"])


# ------------------------------------------------------------------ conflicts and records


def conflicts(conn: psycopg.Connection, org: uuid.UUID | None, *, held_only: bool = True):
    return rows(
        conn,
        """SELECT c.id, o.name AS organization_name, c.entity, c.local_id, c.qbo_id, c.fields,
                  c.local_values, c.remote_values, c.base_values, c.policy, c.status,
                  c.detected_at, c.detected_by
             FROM qbo_sync_conflict AS c JOIN organizations AS o ON o.id = c.organization_id
            WHERE (%s::uuid IS NULL OR c.organization_id = %s)
              AND (NOT %s OR c.status = 'held')
            ORDER BY c.detected_at DESC LIMIT 100""",
        (org, org, held_only),
    )


def resolve_conflict(conn: psycopg.Connection, conflict_id: uuid.UUID, choice: str) -> Any:
    return rows(conn, "SELECT qbo_sync_resolve_conflict(%s, %s) AS outcome", (conflict_id, choice))[
        0
    ]["outcome"]


def failed_records(conn: psycopg.Connection, org: uuid.UUID | None) -> list[dict[str, Any]]:
    return rows(
        conn,
        """SELECT o.name AS organization_name, r.entity, r.record_id, r.qbo_id, r.state,
                  r.error_class, r.error_code, r.error_message, r.intuit_tid, r.attempts
             FROM qbo_sync_record_status AS r JOIN organizations AS o ON o.id = r.organization_id
            WHERE r.state IN ('error', 'held', 'conflict')
              AND (%s::uuid IS NULL OR r.organization_id = %s)
            ORDER BY o.name, r.entity, r.record_id LIMIT 200""",
        (org, org),
    )


def retry_record(conn: psycopg.Connection, entity: str, record_id: uuid.UUID) -> Any:
    return rows(conn, "SELECT qbo_sync_retry_record(%s, %s) AS job", (entity, record_id))[0]["job"]


def skip_record(conn: psycopg.Connection, entity: str, record_id: uuid.UUID, reason: str) -> Any:
    return rows(
        conn, "SELECT qbo_sync_skip_record(%s, %s, %s) AS job", (entity, record_id, reason)
    )[0]["job"]
