"""`payscore scenarios run` end to end (exit codes, JUnit, HTML, JSON), and the reports' shape:
escaped HTML, parseable JUnit, and JSON the gates report (loadtests.scenarios) can read."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from fault_scenarios import catalogue, report
from fault_scenarios.checks import Check
from fault_scenarios.evidence import Evidence, StepRecord
from fault_scenarios.judges import Verdict
from fault_scenarios.runner import ScenarioResult, Target
from merchant_kit.reference import LiveMerchant
from sandbox.cli import _register_plugins, cli
from sandbox.testing import add_merchant

HOSTILE = "<script>alert('x')</script>&\"'"


def result(scenario_id: int, status: str, detail: str = "ok") -> ScenarioResult:
    scenario = catalogue.by_id()[scenario_id]
    ev = Evidence(scenario_id, f"S{scenario_id:02d}-t", "1900000001", HOSTILE)
    ev.steps = [StepRecord(0, "rent", {}, 201, {"merchant_state": HOSTILE}, None,
                           [{"id": 1, "operation": HOSTILE, "status": 500, "fault": HOSTILE}],
                           {"merchant_state": HOSTILE}, None, 0.1)]
    ev.rentals = [{"merchant_state": HOSTILE, "charged": 0}]
    return ScenarioResult(scenario, Verdict(status, [Check("a check", status, detail)]), ev,
                          0.5)


def info() -> dict:
    target = Target("http://127.0.0.1:1/driver", "http://127.0.0.1:2", "1900000001", HOSTILE)
    target.warnings = [HOSTILE]
    return report.meta(target, 1.5)


def test_html_report_is_self_contained_and_escapes_everything():
    page = report.html_report([result(1, "pass"), result(2, "fail", HOSTILE)], info())
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "src=" not in page and "href='http" not in page and "<link" not in page
    assert page.count("<details") == 2 and "Remedy:" in page
    assert catalogue.by_id()[2].remedy.split()[0] in page


def test_junit_xml_parses_and_carries_verdicts_and_remedies():
    results = [result(1, "pass"), result(2, "fail", HOSTILE), result(3, "error", "no fault")]
    root = ET.fromstring(report.junit_xml(results, info()))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "3"
    assert (suite.get("failures"), suite.get("errors")) == ("1", "1")
    cases = suite.findall("testcase")
    assert [c.get("name").split(":")[0] for c in cases] == [
        "S01 create_reply_timeout", "S02 create_reset_before", "S03 create_reset_after"]
    failure = cases[1].find("failure")
    assert failure is not None and HOSTILE in failure.get("message")
    assert "remedy:" in failure.text and cases[2].find("error") is not None


def test_failure_printout_shows_merchant_text_literally():
    from fault_scenarios import cli as scenarios_cli

    with scenarios_cli.console.capture() as captured:
        scenarios_cli._print_failures([result(2, "fail", "[bold]x[/] [nosuchstyle]")])
    text = " ".join(captured.get().split())
    assert "[bold]x[/] [nosuchstyle]" in text and HOSTILE in text
    assert "remedy: " + catalogue.by_id()[2].remedy.split(";")[0] in text


def test_json_report_is_what_the_gates_read():
    from loadtests.scenarios import summarise

    results = [result(i, "pass") for i in range(1, 31)]
    doc = json.loads(report.to_json(results, info()))
    assert doc["passed"] == 30 and len(doc["results"]) == 30
    assert summarise(doc, None)["verdict"] == "pass"
    results[4] = result(5, "fail")
    failed = summarise(json.loads(report.to_json(results, info())), None)
    assert failed["verdict"] == "fail" and failed["results"][4]["remedy"]


# ---------------------------------------------------------------- the command, live


@pytest.fixture(scope="module")
def merchant_for(live, tmp_path_factory):
    started: list[LiveMerchant] = []

    def start(*bugs: str) -> LiveMerchant:
        account = add_merchant(live.app, base_url=live.base_url)
        merchant = LiveMerchant({
            "MERCHANT_JSON": str(account.json_path), "ENABLE_DRIVER": True, "BUGS": bugs,
            "DATA_DIR": str(tmp_path_factory.mktemp("merchant")), "RECONCILE_INTERVAL": 0,
            "CLOCK_URL": live.base_url}).start()
        started.append(merchant)
        return merchant

    yield start
    for merchant in started:
        merchant.stop()


def invoke(*args: str):
    _register_plugins()
    return CliRunner().invoke(cli, ["scenarios", "run", *args], catch_exceptions=False)


def test_run_passes_the_reference_merchant_and_writes_every_report(merchant_for, tmp_path):
    merchant = merchant_for()
    out = {k: tmp_path / f"report.{k}" for k in ("xml", "html", "json")}
    run = invoke("--driver", merchant.driver_url, "--only", "28,29", "--junit",
                 str(out["xml"]), "--html", str(out["html"]), "--json", str(out["json"]))
    assert run.exit_code == 0, run.output
    assert "2/2 passed" in run.output
    doc = json.loads(out["json"].read_text())
    assert [r["id"] for r in doc["results"]] == [28, 29] and doc["mchid"]
    assert all(r["passed"] and r["evidence"]["faults"] is not None for r in doc["results"])
    assert ET.parse(out["xml"]).getroot().find("testsuite").get("failures") == "0"
    assert "28. User not eligible" in out["html"].read_text()


def test_run_exits_1_and_prints_the_remedy_when_a_scenario_fails(merchant_for, tmp_path):
    merchant = merchant_for("no_deposit_fallback")
    junit = tmp_path / "junit.xml"
    run = invoke("--driver", merchant.driver_url, "--only", "28", "--junit", str(junit))
    assert run.exit_code == 1, run.output
    remedy = catalogue.by_id()[28].remedy
    assert "FAIL 28." in run.output and remedy.split(":")[0] in " ".join(run.output.split())
    failure = ET.parse(junit).getroot().find("testsuite/testcase/failure")
    assert failure is not None and "deposit fallback" in failure.get("message")


def test_run_exits_2_when_it_cannot_start(merchant_for):
    assert invoke("--driver", "http://127.0.0.1:9/driver").exit_code == 2
    merchant = merchant_for()
    bad = invoke("--driver", merchant.driver_url, "--only", "31")
    assert bad.exit_code == 2 and "no scenario 31" in bad.output


def test_a_step_made_impossible_by_the_merchant_is_judged_not_swallowed(merchant_for):
    from fault_scenarios import runner

    merchant = merchant_for("no_reconciliation")  # never settles the unknown create
    result = runner.run_scenario(catalogue.by_id()[2], runner.discover(merchant.driver_url))
    assert result.verdict.status == "fail"
    statuses = {c.name: c.status for c in result.verdict.checks}
    assert statuses["ran to the end"] == "error" and statuses["provider orders"] == "fail"
    assert "confirm could not run" in result.problem
    faults = result.evidence.faults
    assert faults and all(f["status"] == "disarmed" for f in faults)


def test_cli_module_registers_the_group():
    _register_plugins()
    assert "scenarios" in cli.commands
    assert Path(catalogue.CATALOGUE_FILE).is_file()
