"""The sync engine's job handler (qbo_sync.entity.handler of every entity): a pull job pulls
(qbo_sync_db.pull), a push job pushes (qbo_sync_db.push), a 'both' job pulls and then pushes
what is still waiting (a pulled change never overwrites a local one: that row is held, and
pushed)."""

from __future__ import annotations

from typing import Any

from qbo_sync_db.pull import Puller
from qbo_sync_db.push import Pusher


def run(ctx: Any) -> dict[str, Any]:
    entity = ctx.job["sync_endpoint"]
    direction = ctx.job.get("direction") or "both"
    puller = Puller(ctx)
    counts = puller.counts
    if direction in ("pull", "both"):
        puller.pull(entity)
        if counts.get("continues"):
            return ctx.summary(**counts)
    if direction in ("push", "both"):
        Pusher(ctx, counts).push(entity)
    return ctx.summary(**counts)
