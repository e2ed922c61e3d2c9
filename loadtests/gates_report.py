"""The onboarding readiness report: one self-contained HTML page and a terminal summary.

Same content as gates.json: the four stages in order, each with its checks, the evidence and
the plots (failure rate over time for the load run, funnel and threshold sweep for the gray
release). Inline CSS and SVG only, so the page can be archived as a CI artifact.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from rich.console import Console
from rich.table import Table

from loadtests.report import VERDICT_STYLE, badge, escape_rich, gray_section, load_section, page

INTRO = ("WeChat Pay Score onboarding gates, as evidence: the merchant's calls are correctly "
         "signed, it survives the anomaly scenarios and a load run with a flow failure rate "
         "whose 95% upper bound is below 0.01%, its gray release converts at least 15% of "
         "sampled users (95% interval), and its circuit breaker protects go-live. A gate "
         "passes only on sufficient evidence; too little evidence is INCONCLUSIVE.")


def _checks(stage: dict[str, Any]) -> str:
    rows = []
    for check in stage["checks"]:
        extra = {k: v for k, v in check.items() if k not in ("check", "verdict", "detail")}
        evidence = (f"<details><summary>evidence</summary><pre>"
                    f"{escape(json.dumps(extra, indent=1, ensure_ascii=False, default=str))}"
                    f"</pre></details>") if extra else ""
        rows.append(f"<tr><td>{escape(check['check'])}</td><td>{badge(check['verdict'])}</td>"
                    f"<td style='text-align:left'>{escape(check['detail'])}{evidence}</td></tr>")
    return ("<table><tr><th>check</th><th>verdict</th><th>detail</th></tr>"
            + "".join(rows) + "</table>")


def _scenario_table(summary: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{r['id']}. {escape(str(r.get('title') or ''))}</td>"
        f"<td>{badge('pass' if r['passed'] else 'fail')}</td>"
        f"<td>{(r.get('seconds') or 0):.1f}s</td>"
        f"<td style='text-align:left'>{escape(r.get('remedy') or '')}</td></tr>"
        for r in summary["results"])
    return ("<table><tr><th>scenario</th><th>verdict</th><th>time</th><th>remedy</th></tr>"
            + rows + "</table><p class='muted'>The runner's own reports: "
            "scenarios/scenarios.html and scenarios.json.</p>")


def html(report: dict[str, Any]) -> str:
    summary = "".join(
        f"<tr><td>{n}. {escape(st['title'])}</td><td>{badge(st['verdict'])}</td>"
        f"<td>{st['seconds']:.0f}s</td></tr>" for n, st in enumerate(report["stages"], 1))
    body = [(f"<p>{badge(report['verdict'])} overall — merchant {escape(str(report['mchid']))} "
            f"via {escape(report['driver'])}; sandbox {escape(report['sandbox'])}; "
            f"{'quick (CI-sized) run' if report['quick'] else 'full-size run'}, wall time "
            f"{report['wall_s']:.0f}s</p>"),
            f"<p class='muted'>{escape(INTRO)}</p>",
            "<table><tr><th>stage</th><th>verdict</th><th>time</th></tr>" + summary + "</table>"]
    for n, stage in enumerate(report["stages"], 1):
        body.append(f"<h2>{n}. {escape(stage['title'])} {badge(stage['verdict'])}</h2>")
        body.append(_checks(stage))
        if stage["name"] == "sandbox_test" and (report.get("scenarios") or {}).get("results"):
            body.append("<h3>Anomaly scenarios</h3>" + _scenario_table(report["scenarios"]))
        if stage["name"] == "sandbox_test" and report.get("load"):
            body.append("<h3>Load run</h3>" + load_section(report["load"]))
        if stage["name"] == "gray_release" and report.get("gray"):
            body.append("<h3>Gray release</h3>" + gray_section(report["gray"]))
    body.append("<p class='muted'>The same data: gates.json next to this page.</p>")
    return page("Pay Score onboarding readiness report", "".join(body))


def print_summary(report: dict[str, Any], console: Console) -> None:
    table = Table(title="Onboarding readiness")
    for col in ("stage", "verdict", "checks", "time"):
        table.add_column(col)
    for n, stage in enumerate(report["stages"], 1):
        checks = "\n".join(f"{c['check']}: {c['verdict']} — {c['detail']}"
                           for c in stage["checks"])
        table.add_row(f"{n}. {stage['title']}",
                      f"[{VERDICT_STYLE.get(stage['verdict'], 'bold')}]"
                      f"{stage['verdict'].upper()}[/]", escape_rich(checks),
                      f"{stage['seconds']:.0f}s")
    console.print(table)
    console.print(f"overall: [{VERDICT_STYLE.get(report['verdict'], 'bold')}]"
                  f"{report['verdict'].upper()}[/] in {report['wall_s']:.0f}s")
