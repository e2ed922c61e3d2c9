"""`payscore scenarios list|run`: the anomaly scenarios against any merchant's driver API.

Registered by sandbox.cli through COMMAND_MODULES (`register(cli)`). The merchant may be written
in any language: the runner reaches it (and the sandbox) over HTTP only. Exit code of `run`: 0
only when every scenario passed, 1 when one failed or could not decide, 2 when the run could
not start.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()
STYLE = {"pass": "green", "fail": "bold red", "error": "yellow"}


def register(cli: click.Group) -> None:
    cli.add_command(scenarios)


@click.group()
def scenarios() -> None:
    """The 30 anomaly scenarios of WeChat's sandbox gate: list them, run them on a merchant."""


@scenarios.command("list")
@click.option("--markdown", is_flag=True, help="Print the README's Markdown table instead.")
def list_scenarios(markdown: bool) -> None:
    """The catalogue: what the sandbox does, what a correct merchant does, how it is judged."""
    from fault_scenarios.catalogue import SCENARIOS
    from fault_scenarios.report import markdown_table

    if markdown:
        sys.stdout.write(markdown_table(SCENARIOS))
        return
    table = Table("#", "category", "scenario", "the sandbox", "a correct merchant", "verdict",
                  show_lines=True, caption="⏩ moves the sandbox clock (shared by every merchant "
                                           "of the sandbox)")
    for s in SCENARIOS:
        title = s.title + (" ⏩" if s.moves_clock else "")
        table.add_row(str(s.id), s.category, title, s.sandbox, s.merchant, s.verdict)
    console.print(table)


def _write(path: Path | None, text: str, what: str) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    console.print(f"{what}: {escape(str(path))}")


@scenarios.command("run")
@click.option("--driver", "driver_url", required=True,
              help="The merchant's driver API, e.g. http://127.0.0.1:8090/driver.")
@click.option("--sandbox", "sandbox_url", default=None,
              help="The sandbox base URL (default: from the driver's health).")
@click.option("--mchid", default=None, help="The merchant's mchid (default: from its health).")
@click.option("--only", default=None, help="Scenario ids, e.g. 1,5,10-12.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write JUnit XML (for CI).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write a self-contained HTML report.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write the full JSON report (verdicts and evidence).")
@click.option("--read-timeout", type=float, default=None,
              help="The merchant's read timeout in s (default: from its health, else 10); "
                   "scenario 1 holds a reply past it.")
@click.option("--recovery-wait", type=float, default=None,
              help="How long scenario 30 waits for the breaker to close, in s (default: the "
                   "breaker reset timeout from the health + 15, else 60).")
def run(driver_url: str, sandbox_url: str | None, mchid: str | None, only: str | None,
        junit: Path | None, html_path: Path | None, json_path: Path | None,
        read_timeout: float | None, recovery_wait: float | None) -> None:
    """Run the scenarios against a merchant: arm, drive, move the clock, judge, disarm."""
    from fault_scenarios import catalogue, report, runner

    started = time.monotonic()
    try:
        chosen = catalogue.select(only)
        target = runner.discover(driver_url, sandbox_url, mchid, read_timeout, recovery_wait)
    except (catalogue.CatalogueError, runner.RunnerError) as exc:
        console.print(f"[bold red]cannot run:[/] {escape(str(exc))}")
        sys.exit(2)
    console.print(f"merchant [bold]{escape(target.merchant)}[/] (mchid {escape(target.mchid)}) "
                  f"via {escape(target.driver_url)}; sandbox {escape(target.sandbox_url)}")
    for warning in target.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("scenarios", total=len(chosen))

        def progress(scenario: catalogue.Scenario, result: runner.ScenarioResult | None) -> None:
            if result is None:
                bar.update(task, description=f"{scenario.id:>2}. {scenario.title[:50]}")
                return
            bar.advance(task)
            style = STYLE.get(result.verdict.status, "")
            bar.console.print(f"[{style}]{result.verdict.status:5}[/] {scenario.id:>2}. "
                              f"{scenario.title} ({result.seconds:.1f} s)")

        try:
            results = runner.run_all(target, chosen, progress)
        except runner.RunnerError as exc:
            console.print(f"[bold red]cannot run:[/] {escape(str(exc))}")
            sys.exit(2)
    info = report.meta(target, time.monotonic() - started)
    _print_failures(results)
    n = report.counts(results)
    console.print(f"[bold]{n['passed']}/{n['total']} passed[/], {n['failed']} failed, "
                  f"{n['errors']} errors in {info['seconds']:.1f} s")
    _write(json_path, report.to_json(results, info), "JSON report")
    _write(junit, report.junit_xml(results, info), "JUnit XML")
    _write(html_path, report.html_report(results, info), "HTML report")
    sys.exit(0 if n["passed"] == n["total"] else 1)


def _print_failures(results: list) -> None:
    for r in results:
        if r.passed:
            continue
        style = STYLE.get(r.verdict.status, "")
        console.print(f"\n[{style}]{r.verdict.status.upper()}[/] {r.scenario.id}. "
                      f"{r.scenario.title}")
        console.print(f"  verdict: {escape(r.scenario.verdict)}")
        for c in r.verdict.checks:
            console.print(f"  [{STYLE.get(c.status, 'dim')}]{c.status:5}[/] "
                          f"{escape(c.name)}: {escape(c.detail)}", highlight=False)
        console.print(f"  evidence: {escape(_evidence_line(r))}", highlight=False)
        console.print(f"  [bold]remedy:[/] {escape(r.scenario.remedy)}")


def _evidence_line(r) -> str:
    """The evidence summary in one line: provider vs merchant, requests, callback answers."""
    from fault_scenarios.evidence import summarise

    s = summarise(r.evidence)
    calls = ", ".join(f"{op}×{n}" for op, n in s["requests"].items()) or "none"
    answers = ", ".join(f"{c['event'].split('.')[-1]}→{c['answer']}"
                        + (f" [{c['fault']}]" if c["fault"] else "")
                        for c in s["callbacks"]) or "none"
    return (f"provider {s['provider'] or 'no order'}, merchant {s['merchant']} (charged "
            f"{s['charged']}); requests {calls}; callbacks {answers}; faults "
            f"{', '.join(s['faults_taken']) or 'none'}")
