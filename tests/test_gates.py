"""The gates report: stage logic, the scenario evidence, the breaker check, and a --quick run.

The --quick run drives the reference merchant through all four stages against a live sandbox
and asserts the report's content (its verdicts may honestly be inconclusive).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from loadtests import gates, scenarios
from loadtests.gates import combine, configured_breaker
from loadtests.gates_report import html


@pytest.mark.parametrize(("verdicts", "expected"), [
    (["pass", "pass"], "pass"), (["pass", "inconclusive"], "inconclusive"),
    (["inconclusive", "fail"], "fail"), (["pass", "error"], "fail"), ([], "inconclusive"),
])
def test_a_stage_passes_only_when_every_check_passes(verdicts, expected):
    assert combine(verdicts) == expected


class _Answer:
    def __init__(self, data):
        self.data = data

    def json(self):
        return self.data


@pytest.mark.parametrize(("health", "verdict", "words"), [
    ({"provider": {"breaker": {"fail_max": 5, "reset_timeout": 30.0, "state": "closed"}}},
     "pass", "opens after 5 failures"),
    ({"merchant": "x"}, "fail", "no circuit breaker"),
    ({"breaker": {"fail_max": 10_000, "reset_timeout": 30}}, "fail", "fail_max"),
    ({"breaker": {"fail_max": 3, "reset_timeout": 0.01}}, "fail", "reset_timeout"),
    ({"breaker": {"fail_max": 3, "reset_timeout": 10, "state": "open"}}, "fail", "closed"),
])
def test_configured_breaker(monkeypatch, health, verdict, words):
    monkeypatch.setattr(gates.requests, "get", lambda *a, **k: _Answer(health))
    found, detail, _breaker = configured_breaker("http://127.0.0.1:1/driver")
    assert found == verdict and words in detail


def test_scenario_report_is_reduced_to_a_check():
    rows = [{"id": i, "title": f"s{i}", "status": "pass", "passed": True} for i in range(1, 31)]
    assert scenarios.summarise({"results": rows}, None)["verdict"] == "pass"
    rows[6] = {"id": 7, "title": "429 bursts", "status": "fail", "passed": False,
               "remedy": "back off"}
    failed = scenarios.summarise(rows, None)
    assert failed["verdict"] == "fail" and "#7 429 bursts" in failed["detail"]
    assert failed["results"][6]["remedy"] == "back off"
    subset = scenarios.summarise(rows[:5], [1, 2, 3, 4, 5], required=30)
    assert subset["verdict"] == "inconclusive" and "only 5 of 30" in subset["detail"]
    assert scenarios.summarise(rows[:5], [1, 2, 3, 4, 5])["verdict"] == "pass"
    assert scenarios.summarise([], [30])["verdict"] == "inconclusive"
    assert scenarios.one({"results": failed["results"]}, 7)["passed"] is False
    assert scenarios.one({}, 30) is None


def test_scenario_ids_parse():
    assert gates.parse_ids("6,18, 10-12") == (6, 10, 11, 12, 18)
    assert gates.parse_ids(None) is None
    with pytest.raises(ValueError):
        gates.parse_ids("1-x")


def test_without_the_runner_the_scenarios_are_inconclusive(monkeypatch):
    monkeypatch.setattr(scenarios, "available", lambda: False)
    result = scenarios.run_catalogue("http://127.0.0.1:1/driver", "http://127.0.0.1:2", None)
    assert result["verdict"] == "inconclusive" and result["ran"] == 0


def _stage(name, verdict, **evidence):
    return {"name": name, "title": name.replace("_", " "), "verdict": verdict, "seconds": 1.0,
            "checks": [{"check": "c", "verdict": verdict, "detail": "d <b>", **evidence}],
            "evidence": {}}


def test_svg_charts_are_well_formed():
    import xml.etree.ElementTree as ET

    from loadtests import svg

    funnel = svg.funnel_chart([{"stage": "sampled", "count": 10, "of_sampled": 1.0},
                               {"stage": "paid <&>", "count": 0, "of_sampled": 0.0}])
    sweep = svg.sweep_chart([{"threshold": t, "completed": 5, "conversion": 0.5 - t / 2000,
                              "default_rate": 0.01} for t in range(450, 801, 10)],
                            {"default_rate": 0.01, "conversion": 0.2})
    timeline = svg.timeline_chart([{"t": 0.0, "flows": 3, "failed": 1},
                                   {"t": 1.0, "flows": 0, "failed": 0}])
    empty = svg.line_chart([], title="nothing", x_label="x", y_label="y")
    for chart in (funnel, sweep, timeline, empty):
        root = ET.fromstring(chart)
        assert root.tag.endswith("svg") and root.find("{http://www.w3.org/2000/svg}title") \
            is not None
    assert "paid &lt;&amp;&gt;" in funnel and "gate 15%" in sweep


def test_report_page_is_self_contained():
    report = {"verdict": "fail", "quick": True, "driver": "http://127.0.0.1:1/driver",
              "sandbox": "http://127.0.0.1:2", "mchid": "19", "wall_s": 3.0,
              "stages": [_stage("api_application", "pass", calls=3),
                         _stage("sandbox_test", "fail"), _stage("gray_release", "pass"),
                         _stage("go_live", "inconclusive")], "load": None, "gray": None}
    page = html(report)
    assert page.count("<h2>") == 4 and "d &lt;b&gt;" in page
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert page.index("API application".lower().replace(" ", "_").replace("_", " ")) < \
        page.index("go live")


def _gates_quick(world, driver_url, out):
    from sandbox.cli import _register_plugins, cli

    _register_plugins()
    return CliRunner().invoke(cli, [
        "gates", "--quick", "--driver", driver_url, "--sandbox", world["sandbox"],
        "--merchant-json", str(world["merchant_json"]), "--out", str(out)])


def test_gates_quick_against_the_reference_merchant(merchant_world):
    out = merchant_world["root"] / "report"
    result = _gates_quick(merchant_world, merchant_world["driver"], out)
    assert result.exit_code in (0, 1, 3), result.output
    report = json.loads((out / "gates.json").read_text())
    stages = {s["name"]: s for s in report["stages"]}
    assert list(stages) == ["api_application", "sandbox_test", "gray_release", "go_live"]
    api = stages["api_application"]["checks"][0]
    assert api["verdict"] == "pass" and api["calls"] > 0 and api["sign_errors"] == 0
    checks = {c["check"]: c for c in stages["sandbox_test"]["checks"]}
    if scenarios.available():  # a few scenarios ran against the merchant and passed
        assert checks["anomaly_scenarios"]["ran"] == len(scenarios.QUICK)
        assert checks["anomaly_scenarios"]["failed"] == 0
    assert checks["anomaly_scenarios"]["verdict"] == "inconclusive"  # not all 30
    load = checks["failure_rate"]
    assert load["flows"] > 0 and load["failed"] == 0, load
    assert load["verdict"] == "inconclusive"  # a quick run cannot show < 0.01 %
    gray_checks = {c["check"]: c for c in stages["gray_release"]["checks"]}
    assert gray_checks["conversion"]["verdict"] == "pass"
    assert gray_checks["gray_flows"]["verdict"] == "pass", gray_checks["gray_flows"]
    go_live = {c["check"]: c for c in stages["go_live"]["checks"]}
    assert go_live["breaker_scenario_30"]["verdict"] == "inconclusive"
    assert go_live["configured_breaker"]["verdict"] == "pass"
    assert go_live["configured_breaker"]["breaker"]["fail_max"] >= 1
    assert report["verdict"] == combine(s["verdict"] for s in report["stages"]) \
        == "inconclusive"
    assert result.exit_code == 3
    page = (out / "gates.html").read_text()
    assert page.count("<svg") == 3  # failure rate over time, funnel, threshold sweep
    assert "Onboarding readiness" in result.output


def test_the_merchant_root_url_is_accepted_for_its_driver(merchant_world):
    from fault_scenarios.clients import resolve_driver_url

    driver = merchant_world["driver"]
    assert driver.endswith("/driver")
    assert resolve_driver_url(driver) == driver
    assert resolve_driver_url(driver.removesuffix("/driver") + "/") == driver


def test_a_url_without_a_driver_fails_before_anything_runs(merchant_world):
    """The sandbox answers /health but is no driver: one clear error, exit 2, no report."""
    from fault_scenarios.clients import DriverNotFound, resolve_driver_url
    with pytest.raises(DriverNotFound) as caught:
        resolve_driver_url(merchant_world["sandbox"])
    words = str(caught.value)
    assert f"GET {merchant_world['sandbox']}/health: 404" in words
    assert f"GET {merchant_world['sandbox']}/driver/health: 404" in words
    out = merchant_world["root"] / "no-driver-report"
    result = _gates_quick(merchant_world, merchant_world["sandbox"], out)
    assert result.exit_code == 2, result.output
    assert "no merchant driver API" in result.output
    assert not (out / "gates.json").exists()


def test_later_stages_are_not_run_when_api_application_fails(monkeypatch, tmp_path):
    from loadtests import runner

    def failed_api(s, mchid, console):
        stage = gates.Stage("api_application", gates.STAGE_TITLES["api_application"])
        stage.check("zero_sign_error", "fail", "3 of 9 calls rejected with SIGN_ERROR")
        stage.decide()
        return stage

    def must_not_run(*_args, **_kw):
        raise AssertionError("a stage ran after the API application stage failed")

    monkeypatch.setattr(runner, "resolve_driver", lambda url: url)
    monkeypatch.setattr(runner, "driver_mchid", lambda url: "1900000001")
    monkeypatch.setattr(gates, "api_application", failed_api)
    for name in ("sandbox_test", "gray_release", "go_live"):
        monkeypatch.setattr(gates, name, must_not_run)
    settings = gates.GateSettings.for_run(quick=True, driver_url="http://127.0.0.1:9/driver",
                                          sandbox_url="http://127.0.0.1:9",
                                          merchant_json=None, out_dir=tmp_path)
    report = gates.run_gates(settings)
    verdicts = [(s["name"], s["verdict"]) for s in report["stages"]]
    assert verdicts == [("api_application", "fail"), ("sandbox_test", "fail"),
                        ("gray_release", "fail"), ("go_live", "fail")]
    assert report["stages"][1]["checks"][0]["check"] == "not_run"
    assert report["verdict"] == "fail"
    assert json.loads((tmp_path / "gates.json").read_text())["verdict"] == "fail"
