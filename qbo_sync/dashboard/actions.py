"""What the status page changes, through the SQL API only, as the role qbo_sync_dashboard.

Each action is one transaction that names the organization it acts for (SET LOCAL
qbo_sync.organization_id), which the SQL entry points check with qbo_sync.may_act_for; a login
role confined to one organization (its own qbo_sync.organization_id setting) keeps that setting:
the dashboard never changes it, so the database refuses its actions for any other organization
too (qbo_sync.may_act_for holds such a login to its setting whatever SQL it runs).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

ENTITIES = ("customers", "items", "invoices", "payments")
DIRECTIONS = ("pull", "push", "both")
CHOICES = ("qbo", "local")


class ActionRefused(Exception):
    """The request is not one the dashboard makes (bad entity, direction, choice)."""


@dataclass(frozen=True)
class Actor:
    """The actions' pool, and the organization its login role is confined to (None: any)."""

    pool: AsyncConnectionPool
    confined_to: uuid.UUID | None = None

    def may_act_for(self, org: uuid.UUID) -> bool:
        return self.confined_to is None or self.confined_to == org

    async def _call(self, org: uuid.UUID, query: str, params: tuple[Any, ...]) -> Any:
        async with self.pool.connection() as conn:
            async with conn.transaction():
                if self.confined_to is None:
                    await _act_for(conn, org)
                cur = await conn.execute(query, params)
                row = await cur.fetchone()
                return row[0] if row else None

    async def sync(self, org: uuid.UUID, entity: str, direction: str) -> uuid.UUID:
        if entity not in ENTITIES or direction not in DIRECTIONS:
            raise ActionRefused(f"unknown entity or direction: {entity!r} {direction!r}")
        return await self._call(
            org, "SELECT public.trigger_qbo_sync(%s, %s, %s, 'urgent')", (org, entity, direction)
        )

    async def requeue(self, org: uuid.UUID, job: uuid.UUID) -> uuid.UUID:
        return await self._call(org, "SELECT public.qbo_sync_requeue(%s)", (job,))

    async def cancel(self, org: uuid.UUID, job: uuid.UUID) -> bool:
        return await self._call(org, "SELECT public.qbo_sync_cancel(%s)", (job,))

    async def resolve(self, org: uuid.UUID, conflict: uuid.UUID, choice: str) -> dict:
        if choice not in CHOICES:
            raise ActionRefused(f"choice must be one of {', '.join(CHOICES)}")
        return await self._call(
            org, "SELECT public.qbo_sync_resolve_conflict(%s, %s, NULL)", (conflict, choice)
        )

    async def retry(self, org: uuid.UUID, entity: str, record: uuid.UUID) -> uuid.UUID:
        if entity not in ENTITIES:
            raise ActionRefused(f"unknown entity {entity!r}")
        return await self._call(
            org, "SELECT public.qbo_sync_retry_record(%s, %s)", (entity, record)
        )

    async def skip(self, org: uuid.UUID, entity: str, record: uuid.UUID, reason: str) -> Any:
        if entity not in ENTITIES:
            raise ActionRefused(f"unknown entity {entity!r}")
        return await self._call(
            org, "SELECT public.qbo_sync_skip_record(%s, %s, %s)", (entity, record, reason)
        )

    async def connect(self, org: uuid.UUID, redirect_uri: str, environment: str) -> str:
        """The Intuit authorization address the person opens to connect `org`."""
        if environment not in ("production", "sandbox"):
            raise ActionRefused("environment must be production or sandbox")
        return await self._call(
            org,
            "SELECT public.qbo_oauth_initiate(%s, %s, %s, NULL)",
            (org, redirect_uri, environment),
        )

    async def disconnect(self, org: uuid.UUID, reason: str) -> dict:
        result = await self._call(org, "SELECT qbo_sync.disconnect(%s, %s)", (org, reason))
        return result if isinstance(result, dict) else json.loads(result or "{}")


async def _act_for(conn: AsyncConnection, org: uuid.UUID) -> None:
    await conn.execute(
        "SELECT pg_catalog.set_config('qbo_sync.organization_id', %s, true)", (str(org),)
    )
