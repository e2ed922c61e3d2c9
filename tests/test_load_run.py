"""Short real Locust runs in subprocesses: local, distributed (2 workers), and through a driver.

Every run settles and judges its flows against a live sandbox on a loopback port; the
assertions are on what the run wrote (Locust's CSV/HTML, flows, the verdict), not only on the
exit code.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.runner import LoadOptions, LoadTestError, run_load, validate


def test_cli_run_against_the_sandbox_with_a_fault_mix(merchant_world):
    out = merchant_world["root"] / "cli-run"
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox.cli", "loadtest", "--target", "sandbox", "--users", "4",
         "--spawn-rate", "4", "--duration", "6s", "--sandbox", merchant_world["sandbox"],
         "--merchant-json", str(merchant_world["merchant_json"]), "--out", str(out),
         "--faults", "http_error:500@10%,callback_duplicate@20%"],
        capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr  # inconclusive: far too few flows
    assert "failure-rate gate: INCONCLUSIVE" in proc.stdout
    stats = {row["Name"]: row for row in csv.DictReader((out / "locust_stats.csv").open())}
    assert {"create_service_order", "user_confirm", "complete_service_order",
            "deduction_succeeded", "query_service_order", "Aggregated"} <= set(stats)
    assert (out / "locust.html").read_text().lstrip().startswith("<!DOCTYPE html>")
    result = json.loads((out / "results.json").read_text())
    tally = result["tally"]
    assert tally["flows"] > 0 and tally["failed"] == 0, tally["examples"]
    assert tally["final_states"] == {"PAID": tally["flows"]}
    assert result["gate"]["verdict"] == "inconclusive"
    assert result["gate"]["more_needed"] == 29956 - tally["flows"]
    taken = {f["effect"]: f["taken"] for f in result["faults"]}
    assert set(taken) == {"http_error", "callback_duplicate"}
    # The faults hit the run and the users survived them: HTTP failures, no flow failure.
    assert taken["http_error"] > 0 and int(stats["Aggregated"]["Failure Count"]) > 0
    assert result["sink"]["received"] >= 2 * tally["flows"] and not result["sink"]["rejected"]


def test_distributed_mode_with_two_workers_stops_at_the_flow_count(merchant_world):
    """--flows ends the run once the master has that many records, long before the cap."""
    out = merchant_world["root"] / "distributed"
    result = run_load(LoadOptions(target="sandbox", users=4, spawn_rate=4, duration="90s",
                                  flows=60, sandbox_url=merchant_world["sandbox"], out_dir=out,
                                  workers=2, merchant_json=merchant_world["merchant_json"]))
    assert result.tally["flows"] >= 60 and result.options["flows"] == 60
    assert result.wall_s < 90  # the flow count, not the duration, ended it
    logs = sorted(p.name for p in (out / "logs").iterdir())
    assert logs == ["master.log", "worker1.log", "worker2.log"]
    flows = [json.loads(line) for line in (out / "flows.jsonl").read_text().splitlines()]
    # Flow ids carry the Locust process (prefix = run id + pid): both workers reported flows.
    assert len({f["flow_id"][:16] for f in flows}) == 2
    assert result.tally["flows"] == len(flows) and result.tally["failed"] == 0
    assert result.locust["aggregated"]["requests"] >= 5 * len(flows)


def test_driver_target_through_the_reference_merchant(merchant_world):
    result = run_load(LoadOptions(target="driver", users=3, spawn_rate=3, duration="6s",
                                  sandbox_url=merchant_world["sandbox"], driver_url=merchant_world["driver"],
                                  out_dir=merchant_world["root"] / "driver",
                                  merchant_json=merchant_world["merchant_json"]))
    names = {row["name"] for row in result.locust["rows"]}
    assert {"start_rental", "user_confirm", "finish_rental", "get_rental"} <= names
    assert result.tally["flows"] > 0 and result.tally["failed"] == 0, result.tally["examples"]
    assert result.orphans == []  # every order the merchant created belongs to a flow
    assert result.settle["reconciled"] is not None


@pytest.mark.parametrize(("changes", "message"), [
    ({"sandbox_url": "http://10.0.0.5:8080"}, "loopback"),
    ({"duration": "2h"}, "--i-know"),
    ({"merchant_json": None}, "merchant.json"),
    ({"target": "driver", "driver_url": None}, "--driver"),
    ({"target": "driver", "driver_url": "http://example.com/driver"}, "loopback"),
    ({"duration": "soon"}, "duration"),
    ({"faults": "http_error@200%"}, "probability"),
])
def test_runs_that_must_not_start(tmp_path, changes, message):
    (tmp_path / "m.json").write_text("{}")
    opts = LoadOptions(target="sandbox", users=1, spawn_rate=1, duration="10s",
                       sandbox_url="http://127.0.0.1:9", out_dir=tmp_path,
                       merchant_json=tmp_path / "m.json")
    for key, value in changes.items():
        setattr(opts, key, value)
    with pytest.raises((LoadTestError, ValueError), match=message):
        validate(opts)


def test_long_runs_need_i_know(tmp_path):
    (tmp_path / "m.json").write_text("{}")
    opts = LoadOptions(target="sandbox", users=1, spawn_rate=1, duration="1h30m",
                       sandbox_url="http://localhost:9", out_dir=tmp_path,
                       merchant_json=Path(tmp_path / "m.json"), i_know=True)
    assert validate(opts) == 5400
