"""The anomaly-scenario catalogue (fault_scenarios) as evidence for the gates report.

Runs the scenarios through the runner's Python API (`runner.discover`, `catalogue.select`,
`runner.run_all`) with a progress bar, keeps the runner's own JSON and HTML reports next to the
gates report, and reduces the results to one gate check. Without the runner installed the check
is inconclusive, never a pass.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from loadtests.gates_math import FAIL, INCONCLUSIVE, PASS

CATALOGUE_SIZE = 30
QUICK = (6, 11, 18, 26, 28)  # retry, probe, duplicate callback, lost complete, fallback
BREAKER_SCENARIO = 30


def available() -> bool:
    return importlib.util.find_spec("fault_scenarios.runner") is not None


def run_catalogue(driver_url: str, sandbox_url: str, console: Console | None,
                  only: Iterable[int] | None = None, out_dir: Path | None = None,
                  required: int | None = None) -> dict[str, Any]:
    """Run the scenarios (all, or `only`) and summarise: verdict, detail, per-scenario rows."""
    wanted = sorted(set(only)) if only else None
    if not available():
        return {"verdict": INCONCLUSIVE, "detail": "the scenario runner (fault_scenarios) is "
                "not installed: the scenarios did not run", "ran": 0, "results": []}
    from fault_scenarios import catalogue, report, runner

    console = console or Console()
    started = time.monotonic()
    try:
        chosen = catalogue.select(",".join(map(str, wanted)) if wanted else None)
        target = runner.discover(driver_url, sandbox_url)
    except (catalogue.CatalogueError, runner.RunnerError) as exc:
        return {"verdict": "error", "detail": f"the scenarios cannot run: {exc}", "ran": 0,
                "results": []}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("scenarios", total=len(chosen))

        def progress(scenario: Any, result: Any) -> None:
            if result is None:
                bar.update(task, description=f"scenario {scenario.id:>2}. {scenario.title[:40]}")
            else:
                bar.advance(task)

        try:
            results = runner.run_all(target, chosen, progress)
        except runner.RunnerError as exc:
            return {"verdict": "error", "detail": f"the scenario run broke: {exc}", "ran": 0,
                    "results": []}
    seconds = time.monotonic() - started
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        info = report.meta(target, seconds)
        (out_dir / "scenarios.json").write_text(report.to_json(results, info))
        (out_dir / "scenarios.html").write_text(report.html_report(results, info))
    rows = [r.to_dict(with_evidence=False) for r in results]
    return summarise(rows, wanted, seconds, required)


def _passed(row: dict[str, Any]) -> bool:
    if isinstance(row.get("passed"), bool):
        return row["passed"]
    return str(row.get("status") or row.get("verdict")).lower() in ("pass", "passed")


def summarise(data: Any, wanted: list[int] | None, seconds: float = 0.0,
              required: int | None = None) -> dict[str, Any]:
    """Results (the runner's rows, or its JSON report) reduced to a gate check: every wanted
    scenario ran and passed; with `required`, fewer scenarios than that are inconclusive."""
    rows = data.get("results", []) if isinstance(data, dict) else list(data)
    results = [{"id": r.get("id"), "title": r.get("title"), "passed": _passed(r),
                "status": r.get("status"), "seconds": r.get("seconds"),
                "remedy": None if _passed(r) else r.get("remedy")} for r in rows]
    expected = required or (len(wanted) if wanted else CATALOGUE_SIZE)
    failed = [r for r in results if not r["passed"]]
    if failed:
        verdict = FAIL
        detail = f"{len(failed)} of {len(results)} failed: " + ", ".join(
            f"#{r['id']} {r['title'] or ''}".strip() for r in failed[:5])
    elif len(results) < expected:
        verdict, detail = INCONCLUSIVE, (f"only {len(results)} of {expected} scenarios ran"
                                         + (", all passed" if results else ""))
    else:
        verdict, detail = PASS, f"{len(results)} of {expected} scenarios passed"
    return {"verdict": verdict, "detail": detail, "ran": len(results), "failed": len(failed),
            "seconds": seconds, "results": results}


def one(summary: dict[str, Any], scenario_id: int) -> dict[str, Any] | None:
    """One scenario's row of a summary, if it ran."""
    return next((r for r in summary.get("results", []) if r["id"] == scenario_id), None)


