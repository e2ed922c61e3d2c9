"""Small self-contained SVG charts for the reports (no JavaScript, no CDN, no matplotlib).

Three shapes cover the reports: horizontal bars (the funnel), a line/point chart (the threshold
sweep as conversion against default rate, the failure rate over time), and both accept
reference lines (the 15 % gate, the current policy).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

FONT = "font-family='system-ui,sans-serif' font-size='11'"
COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c")


def _fmt(value: float, percent: bool) -> str:
    if percent:
        return f"{value * 100:.2f}%" if value < 0.1 else f"{value * 100:.1f}%"
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.2f}"


def funnel_chart(rows: Sequence[dict], width: int = 640, title: str = "Funnel") -> str:
    """Bars for {stage, count, of_sampled} rows, widest first."""
    bar_h, gap, left, top = 24, 8, 110, 28
    height = top + len(rows) * (bar_h + gap) + 10
    biggest = max((r["count"] for r in rows), default=0) or 1
    parts = [_open(width, height, title)]
    for i, row in enumerate(rows):
        y = top + i * (bar_h + gap)
        w = max(1.0, (width - left - 150) * row["count"] / biggest)
        parts.append(f"<text x='{left - 8}' y='{y + 16}' text-anchor='end' {FONT}>"
                     f"{escape(str(row['stage']))}</text>")
        parts.append(f"<rect x='{left}' y='{y}' width='{w:.1f}' height='{bar_h}' "
                     f"fill='{COLOURS[0]}' opacity='{1 - i * 0.1:.2f}'/>")
        parts.append(f"<text x='{left + w + 6:.1f}' y='{y + 16}' {FONT}>{row['count']:,} "
                     f"({row['of_sampled'] * 100:.1f}%)</text>")
    parts.append("</svg>")
    return "".join(parts)


def line_chart(series: Sequence[dict], *, title: str, x_label: str, y_label: str,
               width: int = 640, height: int = 320, x_percent: bool = False,
               y_percent: bool = False, hlines: Sequence[tuple[float, str]] = (),
               vlines: Sequence[tuple[float, str]] = (), bars: Sequence[tuple[float, float]] = (),
               ) -> str:
    """Lines through points; `series` items are {name, points: [(x, y, label?)], dots?}.

    `bars` draws a faint histogram on a secondary scale (e.g. flows per time bucket).
    """
    left, right, top, bottom = 64, 20, 30, 44
    xs = [p[0] for s in series for p in s["points"]] + [v for v, _ in vlines]
    ys = [p[1] for s in series for p in s["points"]] + [v for v, _ in hlines]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    y1 = max(ys) if ys else 1.0
    x1 = x1 if x1 > x0 else x0 + 1
    y0, y1 = 0.0, (y1 * 1.1 if y1 > 0 else 1.0)
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (y - y0) / (y1 - y0) * plot_h

    parts = [_open(width, height, title)]
    parts.append(f"<rect x='{left}' y='{top}' width='{plot_w}' height='{plot_h}' fill='none' "
                 "stroke='#ccc'/>")
    for i in range(5):
        gy = y0 + (y1 - y0) * i / 4
        gx = x0 + (x1 - x0) * i / 4
        parts.append(f"<line x1='{left}' x2='{left + plot_w}' y1='{py(gy):.1f}' "
                     f"y2='{py(gy):.1f}' stroke='#eee'/>")
        parts.append(f"<text x='{left - 6}' y='{py(gy) + 4:.1f}' text-anchor='end' {FONT}>"
                     f"{_fmt(gy, y_percent)}</text>")
        parts.append(f"<text x='{px(gx):.1f}' y='{top + plot_h + 16}' text-anchor='middle' "
                     f"{FONT}>{_fmt(gx, x_percent)}</text>")
    if bars:
        top_bar = max(b for _, b in bars) or 1
        bw = plot_w / max(len(bars), 1) * 0.8
        for x, b in bars:
            h = plot_h * 0.35 * b / top_bar
            parts.append(f"<rect x='{px(x) - bw / 2:.1f}' y='{top + plot_h - h:.1f}' "
                         f"width='{bw:.1f}' height='{h:.1f}' fill='#94a3b8' opacity='0.35'/>")
    for value, label in hlines:
        parts.append(f"<line x1='{left}' x2='{left + plot_w}' y1='{py(value):.1f}' "
                     f"y2='{py(value):.1f}' stroke='#f59e0b' stroke-dasharray='6 4'/>")
        parts.append(f"<text x='{left + plot_w - 4}' y='{py(value) - 4:.1f}' text-anchor='end' "
                     f"{FONT} fill='#b45309'>{escape(label)}</text>")
    for value, label in vlines:
        parts.append(f"<line x1='{px(value):.1f}' x2='{px(value):.1f}' y1='{top}' "
                     f"y2='{top + plot_h}' stroke='#64748b' stroke-dasharray='3 3'/>")
        parts.append(f"<text x='{px(value) + 4:.1f}' y='{top + 12}' {FONT} fill='#334155'>"
                     f"{escape(label)}</text>")
    for n, s in enumerate(series):
        colour = s.get("colour") or COLOURS[n % len(COLOURS)]
        points = s["points"]
        if len(points) > 1:
            path = " ".join(f"{px(p[0]):.1f},{py(p[1]):.1f}" for p in points)
            parts.append(f"<polyline points='{path}' fill='none' stroke='{colour}' "
                         "stroke-width='2'/>")
        for p in points:
            if s.get("dots", True):
                parts.append(f"<circle cx='{px(p[0]):.1f}' cy='{py(p[1]):.1f}' r='2.5' "
                             f"fill='{colour}'/>")
            if len(p) > 2 and p[2]:
                parts.append(f"<text x='{px(p[0]) + 4:.1f}' y='{py(p[1]) - 4:.1f}' {FONT} "
                             f"fill='{colour}'>{escape(str(p[2]))}</text>")
        parts.append(f"<text x='{left + 8}' y='{top + 14 + 14 * n}' {FONT} fill='{colour}'>"
                     f"{escape(s['name'])}</text>")
    parts.append(f"<text x='{left + plot_w / 2:.1f}' y='{height - 8}' text-anchor='middle' "
                 f"{FONT}>{escape(x_label)}</text>")
    parts.append(f"<text x='14' y='{top + plot_h / 2:.1f}' text-anchor='middle' {FONT} "
                 f"transform='rotate(-90 14 {top + plot_h / 2:.1f})'>{escape(y_label)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def sweep_chart(points: Sequence[dict], current: dict | None = None, gate: float = 0.15) -> str:
    """Conversion against default rate, one point per threshold (labelled every 50)."""
    curve = [(p["default_rate"], p["conversion"],
              str(p["threshold"]) if p["threshold"] % 50 == 0 else "")
             for p in points if p["completed"]]
    series = [{"name": "conversion vs default rate, by score threshold", "points": curve}]
    if current is not None:
        series.append({"name": "current policy", "colour": COLOURS[1],
                       "points": [(current["default_rate"], current["conversion"], "policy")]})
    return line_chart(series, title="Score threshold sweep", x_label="default rate",
                      y_label="conversion", x_percent=True, y_percent=True,
                      hlines=[(gate, f"gate {gate:.0%}")])


def timeline_chart(timeline: Sequence[dict]) -> str:
    """Failure rate per time bucket, over faint bars of flows per bucket."""
    points = [(b["t"], b["failed"] / b["flows"] if b["flows"] else 0.0) for b in timeline]
    bars = [(b["t"], b["flows"]) for b in timeline]
    return line_chart([{"name": "flow failure rate", "points": points, "colour": COLOURS[1]}],
                      title="Flow failure rate over time", x_label="seconds into the run",
                      y_label="failed flows", y_percent=True, bars=bars)


def _open(width: int, height: int, title: str) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' role='img' aria-label='{escape(title)}'>"
            f"<title>{escape(title)}</title>"
            f"<text x='8' y='16' font-family='system-ui,sans-serif' font-size='13' "
            f"font-weight='600'>{escape(title)}</text>")
