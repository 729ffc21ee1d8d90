"""Storing webhook POSTs in qbo_webhook_log, many per commit, each request answered only after its
own row is committed.

Requests that arrive together are written together: a writer takes every row waiting (up to
`max_batch`) and inserts them with one INSERT … SELECT FROM unnest(…) in one transaction, then
wakes each request with the outcome. This is group commit done by the listener: one WAL flush
for a batch instead of one per request, and no request is told 200 before its row is durable.
A row the database refuses (a payload PostgreSQL's jsonb cannot hold, such as a \\u0000 escape) is
stored alone, without its parsed payload and marked 'rejected' with the reason (as malformed JSON
is: the listener role may insert only 'received' and 'rejected' rows): nothing signed is lost,
and it never takes the rest of its batch down with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import astuple, dataclass
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

INSERT_MANY = """
INSERT INTO public.qbo_webhook_log
    (body, payload, signature, signature_valid, content_type, remote_addr, payload_format,
     status, error)
SELECT r.body, r.payload::jsonb, r.signature, r.valid, r.content_type, r.remote, r.kind,
       r.status, r.error
  FROM unnest(%s::text[], %s::text[], %s::text[], %s::boolean[], %s::text[], %s::text[],
              %s::text[], %s::text[], %s::text[])
       AS r(body, payload, signature, valid, content_type, remote, kind, status, error)"""

#: errors that say the database is not there (the request is answered 503 and sent again)
UNAVAILABLE = (psycopg.OperationalError, PoolTimeout)


@dataclass
class LogRow:
    body: str
    payload: str | None  # JSON text; PostgreSQL parses it into the jsonb column
    signature: str | None
    valid: bool
    content_type: str | None
    remote: str | None
    kind: str | None
    status: str
    error: str | None


class LogWriter:
    """Writes LogRows through `pool` with `writers` concurrent batches."""

    def __init__(self, pool: AsyncConnectionPool, writers: int, max_batch: int = 200) -> None:
        self.pool = pool
        self.writers = writers
        self.max_batch = max_batch
        self.queue: asyncio.Queue[tuple[LogRow, asyncio.Future[None]]] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._write()) for _ in range(self.writers)]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def store(self, row: LogRow) -> None:
        """Return once `row` is committed; raise when it could not be."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((row, done))
        await done

    async def _write(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                await self._insert([row for row, _ in batch])
            except UNAVAILABLE as exc:
                _settle(batch, exc)
            except psycopg.Error:
                # some row was refused: each alone, so only that one is stored without payload
                for row, done in batch:
                    try:
                        await self._insert_alone(row)
                    except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                        _settle([(row, done)], exc)
                    else:
                        _settle([(row, done)], None)
            except Exception as exc:  # noqa: BLE001 - never leave a request waiting
                _settle(batch, exc)
            else:
                _settle(batch, None)

    async def _insert(self, rows: list[LogRow]) -> None:
        columns = list(zip(*(astuple(row) for row in rows), strict=True))
        for attempt in (1, 2):  # once more on a fresh connection after a database restart
            try:
                async with self.pool.connection() as conn:
                    await conn.execute(INSERT_MANY, [list(column) for column in columns])
                return
            except psycopg.OperationalError:
                if attempt == 2:
                    raise

    async def _insert_alone(self, row: LogRow) -> None:
        try:
            await self._insert([row])
        except UNAVAILABLE:
            raise
        except psycopg.Error as exc:
            reason = (exc.diag.message_primary or type(exc).__name__)[:300]
            await self._insert(
                [
                    LogRow(
                        row.body.replace("\x00", "\ufffd"),
                        None,
                        row.signature,
                        row.valid,
                        row.content_type,
                        row.remote,
                        row.kind,
                        "rejected",
                        f"stored without its payload: {reason}",
                    )
                ]
            )


def _settle(batch: list[tuple[Any, asyncio.Future[None]]], error: BaseException | None) -> None:
    for _, done in batch:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)
