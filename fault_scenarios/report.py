"""What a run leaves behind: a JSON report, JUnit XML for CI, a self-contained HTML page, and
the catalogue as a Markdown table (the README's scenario table).

The HTML page has no external resources (inline CSS, no scripts) and escapes every value taken
from the merchant, the sandbox or the catalogue.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from fault_scenarios.catalogue import Scenario
from fault_scenarios.runner import ScenarioResult, Target

README_START = "<!-- scenarios:start -->"
README_END = "<!-- scenarios:end -->"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def markdown_table(scenarios: Sequence[Scenario]) -> str:
    """The README's scenario table (generated; tests check README.md against it)."""
    lines = ["| # | category | scenario | the sandbox | a correct merchant | bent with |",
             "|---|---|---|---|---|---|"]
    for s in scenarios:
        lines.append(f"| {s.id} | {s.category} | {_cell(s.title)} | {_cell(s.sandbox)} | "
                     f"{_cell(s.merchant)} | {', '.join(f'`{e}`' for e in s.effects) or '—'} |")
    return "\n".join(lines) + "\n"


def readme_block(scenarios: Sequence[Scenario]) -> str:
    return f"{README_START}\n{markdown_table(scenarios)}{README_END}"


# ---------------------------------------------------------------- JSON


def meta(target: Target, seconds: float) -> dict[str, Any]:
    return {"driver": target.driver_url, "sandbox": target.sandbox_url, "mchid": target.mchid,
            "merchant": target.merchant, "hints": target.hints, "warnings": target.warnings,
            "seconds": round(seconds, 2),
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def counts(results: Sequence[ScenarioResult]) -> dict[str, int]:
    out = {"total": len(results), "passed": 0, "failed": 0, "errors": 0}
    for r in results:
        out["passed" if r.verdict.status == "pass" else
            "failed" if r.verdict.status == "fail" else "errors"] += 1
    return out


def to_json(results: Sequence[ScenarioResult], info: dict[str, Any]) -> str:
    doc = {"runner": "payscore scenarios", "report_version": 1, **info, **counts(results),
           "results": [r.to_dict() for r in results]}
    return json.dumps(doc, ensure_ascii=False, indent=1, default=str)


# ---------------------------------------------------------------- JUnit


def _explain(r: ScenarioResult) -> str:
    lines = [f"verdict: {r.scenario.verdict}"]
    lines += [f"[{c.status}] {c.name}: {c.detail}" for c in r.verdict.checks]
    if not r.passed:
        lines.append(f"remedy: {r.scenario.remedy}")
    return "\n".join(lines)


def junit_xml(results: Sequence[ScenarioResult], info: dict[str, Any]) -> str:
    n = counts(results)
    suite = ET.Element("testsuite", name="payscore-anomaly-scenarios", tests=str(n["total"]),
                       failures=str(n["failed"]), errors=str(n["errors"]), skipped="0",
                       time=f"{info.get('seconds', 0):.2f}")
    props = ET.SubElement(suite, "properties")
    for key in ("driver", "sandbox", "mchid", "merchant"):
        ET.SubElement(props, "property", name=key, value=str(info.get(key, "")))
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"scenarios.{r.scenario.category}",
                             name=f"S{r.scenario.id:02d} {r.scenario.slug}: {r.scenario.title}",
                             time=f"{r.seconds:.2f}")
        if r.verdict.status != "pass":
            bad = r.verdict.failed_checks
            message = "; ".join(f"{c.name}: {c.detail}" for c in bad)[:500]
            tag = "failure" if r.verdict.status == "fail" else "error"
            node = ET.SubElement(case, tag, message=message, type=r.verdict.status)
            node.text = _explain(r)
        out = ET.SubElement(case, "system-out")
        out.text = json.dumps(_summary(r), ensure_ascii=False, indent=1, default=str)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _summary(r: ScenarioResult) -> dict[str, Any]:
    return r.to_dict(with_evidence=False)["summary"]


# ---------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
.pass{color:#176c2e;font-weight:600}.fail{color:#b3261e;font-weight:600}
.error{color:#a15c00;font-weight:600}.info{color:#555}
details{margin:.6em 0;border:1px solid #ddd;border-radius:4px;padding:.4em .8em}
summary{cursor:pointer}pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:12px}
.remedy{background:#fff4e5;border-left:4px solid #a15c00;padding:.4em .8em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def html_report(results: Sequence[ScenarioResult], info: dict[str, Any]) -> str:
    n = counts(results)
    rows = "".join(
        f"<tr><td>{r.scenario.id}</td><td>{_e(r.scenario.category)}</td>"
        f"<td><a href='#s{r.scenario.id}'>{_e(r.scenario.title)}</a></td>"
        f"<td class='{_e(r.verdict.status)}'>{_e(r.verdict.status)}</td>"
        f"<td>{r.seconds:.1f} s</td></tr>" for r in results)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Pay Score anomaly scenarios</title>", f"<style>{_CSS}</style></head><body>",
        "<h1>Pay Score anomaly scenarios</h1>",
        (f"<p>Merchant <b>{_e(info.get('merchant'))}</b> (mchid {_e(info.get('mchid'))}) "
         f"via {_e(info.get('driver'))}, sandbox {_e(info.get('sandbox'))}: "
         f"<span class='pass'>{n['passed']} passed</span>, "
         f"<span class='fail'>{n['failed']} failed</span>, "
         f"<span class='error'>{n['errors']} errors</span> in "
         f"{info.get('seconds', 0):.1f} s.</p>"),
        *(f"<p class='error'>{_e(w)}</p>" for w in info.get("warnings") or []),
        ("<table><tr><th>#</th><th>category</th><th>scenario</th><th>verdict</th>"
         f"<th>time</th></tr>{rows}</table>"),
        *(_html_scenario(r) for r in results), "</body></html>"]
    return "\n".join(parts)


def _requests_cell(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"{q.get('operation')} {q.get('status')}"
                     + (f" [{q['fault']}]" if q.get("fault") else "") for q in rows)


def _html_scenario(r: ScenarioResult) -> str:
    s = r.scenario
    checks = "".join(f"<li><span class='{_e(c.status)}'>{_e(c.status)}</span> "
                     f"<b>{_e(c.name)}</b>: {_e(c.detail)}</li>" for c in r.verdict.checks)
    steps = "".join(
        f"<tr><td>{_e(st.label)}</td><td>{_e(st.status if st.status is not None else st.error)}"
        f"</td><td>{_e((st.view or {}).get('merchant_state', ''))}</td>"
        f"<td>{_e(_requests_cell(st.requests))}</td><td>{st.seconds:.2f}</td></tr>"
        for st in r.evidence.steps)
    remedy = "" if r.passed else f"<p class='remedy'><b>Remedy:</b> {_e(s.remedy)}</p>"
    problem = f"<p class='error'>{_e(r.problem)}</p>" if r.problem else ""
    summary = json.dumps(_summary(r), ensure_ascii=False, indent=1, default=str)
    return (f"<details id='s{s.id}'{' open' if not r.passed else ''}><summary>"
            f"<span class='{_e(r.verdict.status)}'>{_e(r.verdict.status)}</span> "
            f"{s.id}. {_e(s.title)}</summary>"
            f"<p><b>The sandbox:</b> {_e(s.sandbox)}<br><b>A correct merchant:</b> "
            f"{_e(s.merchant)}<br><b>Verdict:</b> {_e(s.verdict)}</p>{problem}"
            f"<ul>{checks}</ul>{remedy}"
            "<table><tr><th>step</th><th>answer</th><th>merchant</th>"
            f"<th>requests at the sandbox</th><th>s</th></tr>{steps}</table>"
            f"<pre>{_e(summary)}</pre></details>")
