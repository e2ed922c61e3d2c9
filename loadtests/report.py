"""Terminal (rich) and HTML renderings of load runs, gray releases and the gates report.

The HTML is one self-contained page: inline CSS and inline SVG, nothing fetched.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from rich.console import Console
from rich.table import Table

from loadtests import svg

VERDICT_STYLE = {"pass": "bold green", "fail": "bold red", "inconclusive": "bold yellow",
                 "skipped": "dim", "error": "bold red"}


def pct(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 100:.4f}%" if value < 0.001 else f"{value * 100:.2f}%"


def gate_line(gate: dict[str, Any]) -> str:
    """Observed value, bound and sample of a gate, in one line."""
    more = f"; {gate['more_needed']:,} more needed" if gate.get("more_needed") else ""
    return (f"{gate['verdict'].upper()}: observed {pct(gate['observed'])} "
            f"({gate['successes_or_failures']:,}/{gate['sample']:,}), {gate['bound_kind']} "
            f"bound {pct(gate['bound'])} vs {pct(gate['threshold'])}{more}")


# ---------------------------------------------------------------------------- terminal


def print_load(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    locust = result["locust"]
    table = Table(title=f"HTTP (Locust) — run {result['run_id']}")
    for col in ("request", "count", "failures", "median ms", "p95 ms", "req/s"):
        table.add_column(col, justify="right" if col != "request" else "left")
    for row in locust["rows"] + ([locust["aggregated"]] if locust["aggregated"] else []):
        table.add_row(row["name"], f"{row['requests']:,}", f"{row['failures']:,}",
                      f"{row['median_ms']:.0f}", f"{row['p95_ms']:.0f}", f"{row['rps']:.1f}")
    console.print(table)
    tally = result["tally"]
    flows = Table(title="Flows (judged after settling)")
    for col in ("flows", "failed", "interrupted", "HTTP failures survived", "by category"):
        flows.add_column(col)
    flows.add_row(f"{tally['flows']:,}", f"{tally['failed']:,}", f"{tally['interrupted']:,}",
                  f"{tally['http_failures']:,}",
                  ", ".join(f"{k}={v}" for k, v in tally["by_category"].items()) or "-")
    console.print(flows)
    for example in tally["examples"][:5]:
        console.print(f"  [red]✗[/] {example['flow_id']}: {'; '.join(example['reasons'])}")
    for note in result["settle"].get("notes", []):
        console.print(f"  [yellow]note:[/] {note}")
    gate = result["gate"]
    console.print(f"failure-rate gate: [{VERDICT_STYLE[gate['verdict']]}]"
                  f"{escape_rich(gate_line(gate))}[/]")
    console.print(f"Locust CSV/HTML: {result['paths']['out']}")


def print_gray(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"Gray release ({result['mode']}, {result['policy']['name']})")
    for col in ("stage", "users", "of sampled", "of previous"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for row in result["funnel"]:
        table.add_row(row["stage"], f"{row['count']:,}", pct(row["of_sampled"]),
                      pct(row["of_previous"]))
    console.print(table)
    gate = result["conversion"]
    console.print(f"conversion ({result['conversion_definition']}): "
                  f"[{VERDICT_STYLE[gate['verdict']]}]{escape_rich(gate_line(gate))}[/]")
    console.print(f"default rate {pct(result['default_rate'])}, overdue rate "
                  f"{pct(result['overdue_rate'])}; frozen by risk tiers: "
                  f"{result['frozen_by_risk_tier'] or 0}; ineligible: {result['ineligible']}")
    best = result.get("highest_passing_threshold")
    console.print(f"strictest threshold still passing the conversion gate: {best}")
    if "flows" in result:
        console.print(f"live flows: {result['flows']['flows']:,} judged, "
                      f"{result['flows']['failed']:,} failed; "
                      f"{result['throughput_users_per_s']:.1f} users/s")
    console.print("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in result["timings"].items()))


def escape_rich(text: str) -> str:
    return text.replace("[", r"\[")


# ---------------------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1000px;color:#0f172a}
h1{font-size:1.6rem}h2{margin-top:2rem;border-bottom:1px solid #e2e8f0}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #e2e8f0;padding:4px 8px;
text-align:right}th{background:#f8fafc}td:first-child,th:first-child{text-align:left}
.v{display:inline-block;padding:2px 8px;border-radius:4px;font-weight:600;color:#fff}
.pass{background:#16a34a}.fail,.error{background:#dc2626}.inconclusive{background:#d97706}
.skipped{background:#94a3b8}.muted{color:#64748b}pre{background:#f8fafc;padding:8px;
overflow:auto;font-size:12px}
"""


def badge(verdict: str) -> str:
    return f"<span class='v {escape(verdict)}'>{escape(verdict.upper())}</span>"


PERCENT_COLUMNS = {"of sampled", "of previous", "default_rate", "overdue_rate", "conversion"}


def html_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(_cell(r.get(c), c in PERCENT_COLUMNS))}</td>"
                                    for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any, percent: bool = False) -> str:
    if isinstance(value, float):
        return pct(value) if percent else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def gray_section(result: dict[str, Any]) -> str:
    gate = result["conversion"]
    # The sweep is the model's (live mode: over the same users), so is the policy's point.
    model = result.get("model") or {}
    current = {"default_rate": model.get("default_rate", result["default_rate"]),
               "conversion": model.get("conversion", gate["observed"])}
    rows = [{"stage": r["stage"], "users": r["count"], "of sampled": r["of_sampled"],
             "of previous": r["of_previous"]} for r in result["funnel"]]
    return "".join([
        f"<p>{badge(gate['verdict'])} conversion gate — {escape(gate_line(gate))}</p>",
        (f"<p class='muted'>conversion = {escape(result['conversion_definition'])}; policy "
        f"<b>{escape(result['policy']['name'])}</b>, seed {result['seed']}, "
        f"source {escape(result['source'])}, mode {escape(result['mode'])}</p>"),
        html_table(rows, ["stage", "users", "of sampled", "of previous"]),
        (f"<p>default rate {pct(result['default_rate'])}, overdue rate "
        f"{pct(result['overdue_rate'])}, frozen by risk tiers "
        f"{escape(json.dumps(result['frozen_by_risk_tier']))}, ineligible "
        f"{escape(json.dumps(result['ineligible']))}; strictest threshold still passing: "
        f"{result.get('highest_passing_threshold')}</p>"),
        svg.funnel_chart(result["funnel"]),
        svg.sweep_chart(result["sweep"], current),
        html_table(result["products"], ["product", "min_score", "sampled", "eligible",
                                        "offered", "confirmed", "completed", "paid",
                                        "default_rate"]),
    ])


def load_section(result: dict[str, Any]) -> str:
    gate = result["gate"]
    tally = result["tally"]
    rows = result["locust"]["rows"] + ([result["locust"]["aggregated"]]
                                       if result["locust"]["aggregated"] else [])
    examples = "".join(f"<li>{escape(e['flow_id'])}: {escape('; '.join(e['reasons']))}</li>"
                       for e in tally["examples"][:10])
    return "".join([
        f"<p>{badge(gate['verdict'])} failure-rate gate — {escape(gate_line(gate))}</p>",
        (f"<p>{tally['flows']:,} flows judged, {tally['failed']:,} failed "
        f"({escape(json.dumps(tally['by_category']))}), {tally['interrupted']:,} interrupted; "
        f"{tally['http_failures']:,} HTTP failures survived. Faults: "
        f"{escape(result['options'].get('faults') or 'none')}.</p>"),
        f"<ul>{examples}</ul>" if examples else "",
        html_table([{"request": r["name"], "count": r["requests"], "failures": r["failures"],
                     "median ms": r["median_ms"], "p95 ms": r["p95_ms"], "req/s": r["rps"]}
                    for r in rows], ["request", "count", "failures", "median ms", "p95 ms",
                                     "req/s"]),
        svg.timeline_chart(result["timeline"]) if result["timeline"] else "",
    ])


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{escape(title)}</h1>{body}</body></html>")
