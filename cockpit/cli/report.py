"""`cockpit report --out FILE.html`: the rate as one self-contained HTML file.

Inline CSS and inline SVG charts, no script, no font, no image, no link to fetch: it
opens the same offline, from a mail attachment or a CI artefact. The figures are the
ones `cockpit rate --json` prints (same fold of the same log).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape as _html_escape
from pathlib import Path

from ..config import load_factory
from ..domain.metrics import CORE, FACTORY, METRIC, METRICS, TOO_FEW, Period, Rate, ScopeRate, Trend, describe_change
from ..domain.visible import visible
from ..factory.rate import ARROWS, CHARTED, fmt_value
from .rate import rate_of


def escape(text: object) -> str:
    """HTML-escaped, and its control characters shown (cockpit.domain.visible): a product's name or the
    factory's is text from outside."""
    return _html_escape(visible(text))


COLORS = {"improving": "#2e7d32", "worse": "#c62828", "flat": "#6d6d6d", "rising": "#1565c0", "falling": "#1565c0",
          "unknown": "#9e9e9e"}
VERDICT_COLORS = {"compounding": "#2e7d32", "flat": "#6d6d6d", "worse": "#c62828", TOO_FEW: "#9e9e9e"}

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1d1d1d; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 6px; }
.sub { color: #555; margin-bottom: 16px; }
.verdict { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-weight: 600; font-size: 12px; }
.demo { display: inline-block; padding: 1px 6px; border-radius: 4px; background: #fff3cd; color: #7a5a00; font-size: 12px; }
table { border-collapse: collapse; margin: 8px 0 12px; background: #fff; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; font-size: 13px; white-space: nowrap; }
td.wrap { white-space: normal; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 10px; }
.chart { background: #fff; border: 1px solid #e0e0e0; border-radius: 6px; padding: 6px 8px; }
.chart .t { font-size: 12px; color: #333; display: flex; justify-content: space-between; }
.line { color: #333; margin: 4px 0 8px; }
.caveat { color: #7a5a00; }
section { border-top: 1px solid #ddd; margin-top: 18px; }
"""

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 240, 96, 30, 8, 8, 18


def _x(i: int, n: int) -> float:
    span = W - PAD_L - PAD_R
    return PAD_L + (span * (i + 0.5) / n if n else 0)


def svg_chart(metric: str, periods: Sequence[Period], trend: Trend) -> str:
    """One metric per period: bars for counts, a line for the rest; the fitted trend dashed, in its colour."""
    m = METRIC[metric]
    values = [p.values.get(metric) for p in periods]
    real = [v for v in values if v is not None]
    lo = min([0.0, *real]) if real else 0.0
    hi = max([*real, trend.start or 0.0, trend.end or 0.0, 1e-9]) if real else 1.0
    hi = hi * 1.1 if hi > 0 else 1.0
    n = len(values)

    def y(v: float) -> float:
        return PAD_T + (H - PAD_T - PAD_B) * (1 - (v - lo) / (hi - lo or 1))

    color = COLORS.get(trend.direction, "#1565c0")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="spark" data-metric="{metric}" width="{W}" height="{H}" '
             f'viewBox="0 0 {W} {H}" role="img" aria-label="{escape(m.help)}">',
             f'<line x1="{PAD_L}" y1="{y(lo):.1f}" x2="{W - PAD_R}" y2="{y(lo):.1f}" stroke="#bbb"/>',
             f'<text x="{PAD_L - 4}" y="{PAD_T + 8}" font-size="9" text-anchor="end" fill="#777">'
             f'{escape(fmt_value(metric, hi / 1.1))}</text>',
             f'<text x="{PAD_L - 4}" y="{y(lo):.1f}" font-size="9" text-anchor="end" fill="#777">'
             f'{escape(fmt_value(metric, lo))}</text>']
    if periods:
        parts.append(f'<text x="{PAD_L}" y="{H - 4}" font-size="9" fill="#777">{escape(periods[0].key)}</text>')
        parts.append(f'<text x="{W - PAD_R}" y="{H - 4}" font-size="9" fill="#777" text-anchor="end">'
                     f'{escape(periods[-1].key)}</text>')
    if m.extensive:
        bw = max(2.0, (W - PAD_L - PAD_R) / max(n, 1) * 0.6)
        for i, (p, v) in enumerate(zip(periods, values, strict=True)):
            if v is None:
                continue
            top = y(v)
            parts.append(f'<rect x="{_x(i, n) - bw / 2:.1f}" y="{top:.1f}" width="{bw:.1f}" height="{y(lo) - top:.1f}" '
                         f'fill="#90a4ae"><title>{escape(p.key)}: {escape(fmt_value(metric, v))}</title></rect>')
    else:
        pts = [(i, v) for i, v in enumerate(values) if v is not None]
        if len(pts) > 1:
            path = " ".join(f"{_x(i, n):.1f},{y(v):.1f}" for i, v in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="#546e7a" stroke-width="1.5"/>')
        for i, v in pts:
            parts.append(f'<circle cx="{_x(i, n):.1f}" cy="{y(v):.1f}" r="2.5" fill="#546e7a">'
                         f'<title>{escape(periods[i].key)}: {escape(fmt_value(metric, v))}</title></circle>')
    if trend.start is not None and trend.end is not None:
        xs = [i for i, v in enumerate(values) if v is not None] or [0]
        first, last = (xs[0], xs[-1]) if not m.extensive else (_first_covered(periods), n - 1)
        parts.append(f'<line class="trend" x1="{_x(first, n):.1f}" y1="{y(trend.start):.1f}" x2="{_x(last, n):.1f}" '
                     f'y2="{y(trend.end):.1f}" stroke="{color}" stroke-width="2" stroke-dasharray="5 3"/>')
    parts.append("</svg>")
    return "".join(parts)


def _first_covered(periods: Sequence[Period]) -> int:
    return next((i for i, p in enumerate(periods) if p.coverage >= 0.25), 0)


def _badge(verdict: str) -> str:
    return f'<span class="verdict" style="background:{VERDICT_COLORS.get(verdict, "#666")}">{escape(verdict)}</span>'


def _name(name: str) -> str:
    return "the factory" if name == FACTORY else name


def _scope_html(name: str, scope: ScopeRate, per: str) -> str:
    periods = scope.weeks if per == "week" else scope.days
    v = scope.verdict
    out = [f'<section id="scope-{escape(name)}"><h2>{escape(_name(name))} {_badge(v.verdict)}'
           + (' <span class="demo">demo history: simulated</span>' if scope.demo else "") + "</h2>",
           f'<div class="line">{escape(v.line)}</div>']
    if v.caveat:
        out.append(f'<div class="caveat">{escape(v.caveat)}</div>')
    out.append('<div class="grid">')
    for metric in CHARTED:
        t = scope.trend[metric]
        change = "" if t.change is None or t.direction == "unknown" else " " + describe_change(t)
        out.append(f'<div class="chart"><div class="t"><span>{escape(METRIC[metric].label)} '
                   f'<b>{escape(fmt_value(metric, scope.totals.get(metric)))}</b></span>'
                   f'<span style="color:{COLORS.get(t.direction, "#333")}">{ARROWS[t.direction]} '
                   f'{escape(t.direction)}{escape(change)}</span></div>{svg_chart(metric, periods, t)}</div>')
    out.append("</div>")
    out.append(f"<table><tr><th>metric</th><th>group</th><th>over the window</th><th>per {per}: first → last fitted</th>"
               "<th>trend</th><th>what it is</th></tr>")
    for m in METRICS:
        t = scope.trend[m.name]
        fitted = "–" if t.start is None else f"{fmt_value(m.name, t.start)} → {fmt_value(m.name, t.end)}"
        core = " (verdict)" if m.name in CORE else ""
        out.append(f"<tr><td>{escape(m.label)}{core}</td><td>{m.group}</td>"
                   f'<td class="num">{escape(fmt_value(m.name, scope.totals.get(m.name)))}</td>'
                   f'<td class="num">{escape(fitted)}</td>'
                   f'<td style="color:{COLORS.get(t.direction, "#333")}">{ARROWS[t.direction]} {t.direction}'
                   f'{escape(" " + describe_change(t) if t.change is not None and t.direction != "unknown" else "")}'
                   f'</td><td class="wrap">{escape(m.help)}</td></tr>')
    out.append("</table></section>")
    return "\n".join(out)


def render(rate: Rate, *, title: str = "factory") -> str:
    """The whole report as one HTML string."""
    per = rate.trend_per
    when = datetime.fromtimestamp(time.time()).strftime("%Y-%m-%d %H:%M")
    window = (f"{datetime.fromtimestamp(rate.since):%Y-%m-%d %H:%M} → {datetime.fromtimestamp(rate.until):%Y-%m-%d %H:%M}")
    rows = []
    for name, scope in [(FACTORY, rate.factory), *rate.products.items()]:
        t = scope.totals
        rows.append(f'<tr><td><a href="#scope-{escape(name)}">{escape(_name(name))}</a>'
                    + (' <span class="demo">demo</span>' if scope.demo else "") + f"</td><td>{_badge(scope.verdict.verdict)}</td>"
                    + "".join(f'<td class="num">{escape(fmt_value(m, t.get(m)))} '
                              f'<span style="color:{COLORS.get(scope.trend[m].direction, "#333")}">'
                              f"{ARROWS[scope.trend[m].direction]}</span></td>" for m in CORE)
                    + "</tr>")
    head = "".join(f"<th>{escape(METRIC[m].label)}</th>" for m in CORE)
    body = "\n".join(_scope_html(name, scope, per) for name, scope in [(FACTORY, rate.factory), *rate.products.items()])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Cockpit rate — {escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body>
<h1>Does {escape(title)} compound, or only make motion?</h1>
<div class="sub">Window {escape(window)} · trend per {per} (least squares; dashed line) · written {escape(when)} by
<code>cockpit report</code> from the event log alone. ↑ improving ↓ worse → flat; ↗ ↘ counts that are neither good nor bad.
The verdict weighs {", ".join(escape(METRIC[m].label) for m in CORE)}: "compounding" when at least two more improve than
worsen, "worse" the other way round, "flat" otherwise; "{TOO_FEW}" under the minimum sample.</div>
<table><tr><th>scope</th><th>verdict</th>{head}</tr>
{"".join(rows)}
</table>
{body}
</body></html>
"""


def write_report(rate: Rate, out: Path, *, title: str = "factory") -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(rate, title=title), encoding="utf-8")
    return out


def cmd_report(args: argparse.Namespace) -> int:
    config = load_factory(args.factory)
    rate = rate_of(config, since=args.since)
    path = write_report(rate, Path(args.out), title=config.factory.name)
    print(path)
    return 0


def register(sub: argparse._SubParsersAction, factory_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    r = sub.add_parser("report", help="the rate as one self-contained HTML file (inline SVG charts, nothing to fetch)")
    factory_arg(r)
    r.add_argument("--out", "-o", required=True, help="the HTML file to write")
    r.add_argument("--since", help="start of the window: 2025-03-01, a date-time, or 30d / 6w back (default: all)")
    r.set_defaults(func=cmd_report)
