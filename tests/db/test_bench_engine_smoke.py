"""The engine benchmark (bench/bench_engine.py) at a tiny scale, as `python -m bench` runs it: its
JSON has every part, and the counts in it are right (what was seeded arrived, every change and
push went through, every organization's jobs completed). Timings are not checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTITIES = ("customers", "items", "invoices", "payments")


@pytest.mark.slow
def test_the_engine_benchmark_runs_small_and_its_counts_are_right(tmp_path):
    out = tmp_path / "engine.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--only",
            "engine",
            "--scale",
            "0.002",
            "--orgs",
            "2",
            "--orgs-rounds",
            "2",
        ]
        + ["--latency-ms", "5", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "4 workers against 1" in run.stdout
    report = json.loads(out.read_text())
    assert {"machine", "settings", "pull", "incremental", "push", "orgs", "wall_seconds"} <= set(
        report
    )
    company = report["settings"]["company"]
    assert company == {"customers": 20, "items": 4, "invoices": 40, "payments": 20}

    pull = report["pull"]
    assert pull["counts_match"] is True
    assert {e: pull["local"][e] for e in ENTITIES} == company
    assert pull["local"]["lines"] == pull["qbo_sales_lines"] >= company["invoices"]
    assert pull["rows"] == sum(pull["local"].values())
    assert [e["entity"] for e in pull["entities"]] == ["items", "customers", "invoices", "payments"]
    for entity in pull["entities"]:
        assert entity["status"] == "completed", entity
        assert entity["calls"] >= entity["minimum_calls"] == 1
        assert entity["peak_rss_kb"] > 0
    assert pull["calls"] >= pull["minimum_calls"] == 4
    assert pull["apply_functions"]["apply_pulled"]["calls"] >= 4
    assert pull["apply_rows_per_second"] > 0 and pull["throttled"] == 0

    incremental = report["incremental"]
    assert incremental["changed"] == {e: 1 for e in ENTITIES}
    assert incremental["all_arrived"] is True
    # one job's CDC call may bring the other entities too: their jobs find them up to date
    modes = [j["mode"] for j in incremental["jobs"]]
    assert "incremental" in modes and set(modes) <= {"incremental", "up to date"}
    assert incremental["cdc_calls"] >= 1

    push = report["push"]
    assert (push["changed_invoices"], push["new_customers"]) == (10, 2)
    assert push["counts_match"] is True
    assert push["operations"] == 12 and push["new_customers_linked"] == 2
    assert push["still_waiting"] == {"customers": 0, "invoices": 0}
    assert push["calls"] >= push["minimum_calls"] and push["throttled"] == 0

    orgs = report["orgs"]
    # the rounds alternate which run goes first, and each run starts from an empty copy of the
    # installed database, not from what the runs before it left
    assert [(r["round"], r["workers"], r["order_in_round"]) for r in orgs["runs"]] == [
        (1, 1, 1),
        (1, 4, 2),
        (2, 1, 2),
        (2, 4, 1),
    ]
    for run_ in orgs["runs"]:
        assert run_["rows_before"] == 0
        assert run_["organizations"] == run_["organizations_matching"] == 2
        for cycle in (run_["full"], run_["incremental"]):
            assert cycle["jobs"] == cycle["completed"] == 8, cycle
            assert cycle["throttled"] == 0
        assert run_["full"]["modes"] == ["full"]
        assert "incremental" in run_["incremental"]["modes"]
        assert set(run_["incremental"]["modes"]) <= {"incremental", "up to date"}
        assert run_["incremental"]["changed"] == run_["incremental"]["arrived"] == 8
    assert orgs["full_ratio"] > 0 and orgs["incremental_ratio"] > 0
    # the ratio reported is the median of the rounds' (of two: their mean)
    rounds = [r["full_ratio"] for r in orgs["rounds"]]
    assert len(rounds) == 2 and orgs["full_ratio"] == sum(rounds) / 2
