"""Fault injection: random 500/503/504/timeouts at configured rates, one-shot faults queued by
tests (``/_sim/faults``), and "commit the write, then drop the connection" — the failure that
``requestid`` exists for.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from simulator.errors import QBOError, fault_response

if TYPE_CHECKING:
    from simulator.state import State

KINDS = {"500", "503", "504", "timeout", "drop_after_commit"}


def _take_queued(
    state: State, request: web.Request, kinds: set[str], named_path_only: bool = False
) -> dict[str, Any] | None:
    for i, fault in enumerate(state.next_faults):
        if fault["kind"] not in kinds:
            continue
        if named_path_only and not fault.get("path_contains"):
            continue
        if fault.get("method") and fault["method"].upper() != request.method:
            continue
        if fault.get("path_contains") and fault["path_contains"] not in request.path_qs:
            continue
        fault["times"] = fault.get("times", 1) - 1
        if fault["times"] <= 0:
            state.next_faults.pop(i)
        return fault
    return None


async def before(state: State, request: web.Request, oauth: bool = False) -> web.Response | None:
    """A fault answered instead of running the call, or None.

    The OAuth endpoints (`oauth`) take only queued faults that name their path
    (`path_contains`, e.g. "/oauth2/v1/tokens/bearer": the token endpoint down), never the
    random rates, which are per API call; their 500 is an HTML page, not a QBO Fault."""
    cfg = state.cfg
    fault = _take_queued(state, request, {"500", "503", "504", "timeout"}, named_path_only=oauth)
    kind = fault["kind"] if fault else None
    if (
        kind is None
        and not oauth
        and (cfg.rate_500 or cfg.rate_503 or cfg.rate_504 or cfg.rate_timeout)
    ):
        roll = state.fault_rng.random()
        for name, rate in (
            ("500", cfg.rate_500),
            ("503", cfg.rate_503),
            ("504", cfg.rate_504),
            ("timeout", cfg.rate_timeout),
        ):
            if roll < rate:
                kind = name
                break
            roll -= rate
    if kind is None:
        return None
    state.count(request.match_info.get("realm"), f"fault.{kind}")
    now = state.clock.now()
    if kind == "500" and oauth:
        return web.Response(
            status=500,
            text="<html><body>500 Internal Server Error</body></html>",
            content_type="text/html",
        )
    if kind == "500":
        return fault_response(
            QBOError(
                "10000",
                "An application error has occurred while processing your request",
                "System Failure Error: An unexpected error occurred (simulated)",
                status=500,
                fault_type="SystemFault",
            ),
            now,
        )
    if kind == "503":
        return web.Response(
            status=503,
            text="<html><body>503 Service Unavailable</body></html>",
            content_type="text/html",
        )
    if kind == "504":
        return web.Response(
            status=504,
            text="<html><body>504 Gateway Time-out</body></html>",
            content_type="text/html",
        )
    await asyncio.sleep(cfg.timeout_s)  # the client gives up first
    drop_connection(request)
    return web.Response(status=504)


def drop_after_commit(state: State, request: web.Request) -> bool:
    if _take_queued(state, request, {"drop_after_commit"}) is not None:
        state.count(request.match_info.get("realm"), "fault.drop_after_commit")
        return True
    rate = state.cfg.rate_drop_after_commit
    if rate and state.fault_rng.random() < rate:
        state.count(request.match_info.get("realm"), "fault.drop_after_commit")
        return True
    return False


def drop_connection(request: web.Request) -> None:
    """Close the socket without an answer (the write, if any, is already committed)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
