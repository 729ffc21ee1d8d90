"""The geometry of the activity chart (bars per hour), drawn as inline SVG by part_chart.html."""

from __future__ import annotations

from typing import Any

WIDTH = 720
HEIGHT = 120
LEFT = 48
BOTTOM = 18


def bars(activity: dict[str, Any]) -> dict[str, Any]:
    """Two charts over the last 24 hours: jobs (completed and failed, stacked) and QBO calls per
    hour, the calls against the realm's hourly limit (drawn when within reach of the bars)."""
    hours = activity["hours"]
    slot = (WIDTH - LEFT) / max(len(hours), 1)
    plot = HEIGHT - BOTTOM
    jobs_top = max([h["completed"] + h["failed"] for h in hours] + [1])
    calls_peak = max([h["qbo_calls"] for h in hours] + [0])
    limit = activity["per_hour"]
    # the limit line is drawn when the busiest hour used a fifth of it or more; else the axis
    # follows the busiest hour and the limit is given as text
    calls_top = max(calls_peak, 1) if calls_peak * 5 < limit else max(calls_peak, limit)
    jobs, calls = [], []
    for i, h in enumerate(hours):
        x = LEFT + i * slot + 1
        done_h = plot * h["completed"] / jobs_top
        fail_h = plot * h["failed"] / jobs_top
        label = h["hour"].strftime("%H:00")
        jobs.append(
            {
                "x": round(x, 1),
                "w": round(slot - 2, 1),
                "done_y": round(plot - done_h, 1),
                "done_h": round(done_h, 1),
                "fail_y": round(plot - done_h - fail_h, 1),
                "fail_h": round(fail_h, 1),
                "label": label,
                "title": f"{label}: {h['completed']} completed, {h['failed']} failed",
                "tick": i % 3 == 0,
            }
        )
        calls_h = plot * h["qbo_calls"] / calls_top
        calls.append(
            {
                "x": round(x, 1),
                "w": round(slot - 2, 1),
                "y": round(plot - calls_h, 1),
                "h": round(calls_h, 1),
                "label": label,
                "title": f"{label}: {h['qbo_calls']} QBO calls "
                f"({100 * h['qbo_calls'] / limit:.1f} % of {limit:,} an hour)",
                "tick": i % 3 == 0,
            }
        )
    limit_y = round(plot - plot * limit / calls_top, 1) if limit <= calls_top else None
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "plot": plot,
        "jobs": jobs,
        "jobs_top": jobs_top,
        "calls": calls,
        "calls_top": calls_top,
        "calls_peak": calls_peak,
        "calls_total": sum(h["qbo_calls"] for h in hours),
        "jobs_total": sum(h["completed"] + h["failed"] for h in hours),
        "limit": limit,
        "per_minute": activity["per_minute"],
        "limit_y": limit_y,
        "peak_share": 100 * calls_peak / limit if limit else 0,
    }
