"""Proof that the scenarios mean something: the reference merchant passes all 30, and the same
merchant with one realistic bug switched on fails the scenario that exists to catch that bug
(fault_scenarios/proof.py), for every scenario.

One live sandbox for the module; one reference merchant per bug switch, each under its own
mchid, served in-process on a free port. Tests may import the reference merchant; the runner
itself reaches it over HTTP only. The test merchant's read timeout (2 s) and breaker reset
(1 s) are shorter than the go-live defaults so that scenarios 1 and 30 take seconds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fault_scenarios import catalogue, runner
from fault_scenarios.proof import EXPECTED_FAILURES, RACY
from merchant_kit.reference import BUGS, LiveMerchant
from sandbox.live import LiveSandbox
from sandbox.testing import add_merchant

FAST = {"RECONCILE_INTERVAL": 0, "PROVIDER_TIMEOUTS": {"connect": 3.05, "read": 2.0},
        "BREAKER_RESET_TIMEOUT": 1.0}
BUDGET_S = 240  # all 30 take about a minute here; this only catches a runaway
TMPFS = Path("/dev/shm")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Iterator[Path]:
    """Where the SQLite files live: tmpfs when there is one (every commit here is an fsync
    on disk, and this module makes thousands of them), else pytest's tmp dir."""
    if TMPFS.is_dir() and os.access(TMPFS, os.W_OK):
        root = Path(tempfile.mkdtemp(prefix="payscore-scenarios-", dir=TMPFS))
        yield root
        shutil.rmtree(root, ignore_errors=True)
    else:
        yield tmp_path_factory.mktemp("scenarios")


class Merchants:
    """Reference merchants by bug switches, started on first use, stopped with the module."""

    def __init__(self, live: LiveSandbox, root: Any):
        self.live, self.root = live, root
        self.running: dict[tuple[str, ...], LiveMerchant] = {}
        self.seen: dict[tuple[str, ...], set[str]] = {}  # order numbers used, per merchant

    def get(self, bugs: tuple[str, ...] = ()) -> LiveMerchant:
        if bugs not in self.running:
            account = add_merchant(self.live.app, base_url=self.live.base_url)
            name = "-".join(bugs) or "reference"
            self.running[bugs] = LiveMerchant({
                "MERCHANT_JSON": str(account.json_path), "DATA_DIR": str(self.root / name),
                "ENABLE_DRIVER": True, "CLOCK_URL": self.live.base_url, "BUGS": bugs,
                **FAST}).start()
            self.seen[bugs] = set()
        return self.running[bugs]

    def stop(self) -> None:
        for merchant in self.running.values():
            merchant.stop()


@pytest.fixture(scope="module")
def live(data_root) -> Iterator[LiveSandbox]:
    with LiveSandbox(data_root / "sandbox") as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def merchants(live, data_root) -> Iterator[Merchants]:
    found = Merchants(live, data_root / "merchants")
    yield found
    found.stop()


def explain(result: runner.ScenarioResult) -> str:
    return "\n".join(f"  [{c.status}] {c.name}: {c.detail}" for c in result.verdict.checks)


def test_every_scenario_is_proven_by_a_real_bug_switch():
    assert set(EXPECTED_FAILURES) == {s.id for s in catalogue.load()}
    assert set(EXPECTED_FAILURES.values()) <= set(BUGS)
    assert set(RACY) <= set(EXPECTED_FAILURES)


def test_the_reference_merchant_passes_all_30(merchants):
    target = runner.discover(merchants.get().driver_url)
    assert target.mchid and target.sandbox_url and not target.warnings
    started = time.monotonic()
    results = runner.run_all(target, catalogue.load())
    seconds = time.monotonic() - started
    failed = {r.scenario.id: f"{r.verdict.status}\n{explain(r)}" for r in results if not r.passed}
    assert not failed, "\n".join(f"S{k}: {v}" for k, v in failed.items())
    assert len(results) == 30 and seconds < BUDGET_S
    # every scenario exercised what it claims: each required fault was taken
    for r in results:
        assert all(f.get("taken") for f in r.evidence.faults if f.get("required")), r.scenario.id
    print(f"\nall 30 scenarios passed against the reference merchant in {seconds:.1f} s")


@pytest.mark.parametrize("scenario_id, bug", sorted(EXPECTED_FAILURES.items()),
                         ids=[f"S{k:02d}-{v}" for k, v in sorted(EXPECTED_FAILURES.items())])
def test_the_broken_merchant_fails_the_scenario(merchants, scenario_id, bug):
    target = runner.discover(merchants.get((bug,)).driver_url)
    scenario = catalogue.by_id()[scenario_id]
    for _ in range(RACY.get(scenario_id, 1)):
        result = runner.run_scenario(scenario, target, seen=merchants.seen[(bug,)])
        if result.verdict.status == "fail":
            break
    assert result.verdict.status == "fail", (
        f"S{scenario_id} did not catch {bug}: {result.verdict.status}\n{explain(result)}")
    report = result.to_dict(with_evidence=False)
    assert report["remedy"] == scenario.remedy and not report["passed"]
