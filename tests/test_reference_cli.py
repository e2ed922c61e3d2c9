"""`payscore merchant-demo` and `payscore demo`, run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
import time

import click
import pytest
import requests
from click.testing import CliRunner

from loadtests.runner import free_port
from merchant_kit import cli as merchant_cli
from sandbox import demo as demo_cli

LAUNCH = ("import click; from merchant_kit.cli import register; "
          "group = click.Group(); register(group); group()")


def group_with(module) -> click.Group:
    group = click.Group()
    module.register(group)
    return group


def test_merchant_demo_lists_bugs_and_refuses_unknown_ones():
    runner = CliRunner()
    listed = runner.invoke(group_with(merchant_cli), ["merchant-demo", "--list-bugs"])
    assert listed.exit_code == 0
    assert "recomplete_on_lost_reply" in listed.output and "no_dedupe" in listed.output
    wrong = runner.invoke(group_with(merchant_cli), ["merchant-demo", "--bug", "no_such_bug"])
    assert wrong.exit_code == 2 and "no_such_bug" in wrong.output
    missing = runner.invoke(group_with(merchant_cli),
                            ["merchant-demo", "--merchant-json", "/nonexistent/merchant.json"])
    assert missing.exit_code == 2 and "not found" in missing.output


def test_merchant_demo_serves_the_driver_api_against_a_sandbox(payscore_sandbox, tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "merchant-demo", "--sandbox", payscore_sandbox.base_url,
         "--merchant-json", str(payscore_sandbox.merchant_json), "--port", str(port),
         "--data-dir", str(tmp_path / "merchant"), "--bug", "no_dedupe",
         "--reconcile-interval", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/driver"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                health = requests.get(url + "/health", timeout=2).json()
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "merchant-demo did not start"
                time.sleep(0.1)
        assert health["driver_version"] == "1" and health["bugs"] == ["no_dedupe"]
        assert health["clock"]["following"] == payscore_sandbox.base_url
        assert health["notify_url"] == f"http://127.0.0.1:{port}/payscore/notify"
        rental = requests.post(url + "/rentals", json={"openid": "o_magic_never_confirms",
                                                       "deposit": 9900}, timeout=30)
        assert rental.status_code == 201 and rental.json()["merchant_state"] == "PENDING_CONFIRM"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_payscore_demo_runs_four_rentals_and_prints_their_timelines(monkeypatch):
    monkeypatch.setenv("COLUMNS", "220")  # rich wraps at 80 columns when not on a terminal
    result = CliRunner().invoke(group_with(demo_cli), ["demo"])
    assert result.exit_code == 0, result.output
    out = result.output
    for expected in ("callback PAYSCORE.USER_CONFIRM: merchant answered 204",
                     "callback PAYSCORE.USER_PAID: merchant answered 204",
                     "callback applied: REFUND.SUCCESS", "expire: CREATED → EXPIRED",
                     "DEPOSIT_FALLBACK", "device released"):
        assert expected in out, expected
    summary = out[out.index("the merchant's view"):]
    rows = [line for line in summary.splitlines() if line.startswith("│ ")]
    assert [r.split("│")[3].strip() for r in rows] == ["PAID", "PAID", "DEPOSIT_FALLBACK",
                                                      "EXPIRED"]
