"""Charts drawn on the server as SVG (no script, no chart library, no outside service): a line
chart of counts over time and a horizontal bar chart. Every label is escaped; the SVG is inline in
the page, so it prints and works with the page's CSP."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from markupsafe import Markup

PALETTE = ("#0b4f6c", "#c05621", "#2f855a", "#a4261b", "#6b46c1", "#b7791f", "#2c7a7b")


def _nice(top: float) -> float:
    """A round upper bound for an axis of four equal steps (each 1, 2 or 5 times a power of ten)."""
    if top <= 0:
        return 4
    quarter = top / 4
    power = 10 ** (len(str(int(quarter))) - 1) if quarter >= 1 else 1
    for m in (1, 2, 5, 10):
        if quarter <= m * power:
            return 4 * m * power
    return 40 * power


def line_chart(title: str, times: Sequence[datetime], series: dict[str, Sequence[int]], *, width: int = 720,
               height: int = 260, cumulative: bool = True) -> Markup:
    """One line per series over `times` (hour buckets); cumulative totals by default."""
    left, right, top, bottom = 56, 16, 28, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f'<title>{escape(title)}</title>',
             f'<text x="{left}" y="18" class="chart-title">{escape(title)}</text>']
    values = {}
    for name, raw in series.items():
        running, out = 0, []
        for v in raw:
            running = running + v if cumulative else v
            out.append(running)
        values[name] = out
    peak = _nice(max((max(v) for v in values.values() if v), default=0))
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">{peak * i / 4:,.0f}</text>')
    n = len(times)
    if n == 0:
        parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" class="axis" text-anchor="middle">'
                     "no events yet</text></svg>")
        return Markup("".join(parts))

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    for i in sorted({0, n // 2, n - 1}):
        anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
        parts.append(f'<text x="{x(i):.1f}" y="{top + plot_h + 16}" class="axis" text-anchor="{anchor}">'
                     f'{escape(times[i].strftime("%d %b %H:00"))}</text>')
    for k, (name, vals) in enumerate(values.items()):
        colour = PALETTE[k % len(PALETTE)]
        points = " ".join(f"{x(i):.1f},{top + plot_h - plot_h * v / peak:.1f}" for i, v in enumerate(vals))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        lx = left + (k % 4) * (plot_w / 4)
        ly = height - 8 if k < 4 else height - 20
        parts.append(f'<rect x="{lx:.1f}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{lx + 14:.1f}" y="{ly}" class="legend">{escape(name)} ({vals[-1]:,})</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(title: str, rows: Sequence[tuple[str, int]], *, width: int = 720, bar: int = 22) -> Markup:
    """One horizontal bar per (label, value)."""
    left, right, top = 170, 70, 28
    height = top + bar * max(len(rows), 1) + 12
    peak = max((v for _, v in rows), default=0) or 1
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">', f"<title>{escape(title)}</title>",
             f'<text x="0" y="18" class="chart-title">{escape(title)}</text>']
    for i, (label, value) in enumerate(rows):
        y = top + i * bar
        w = (width - left - right) * value / peak
        parts.append(f'<text x="{left - 8}" y="{y + bar * 0.68:.1f}" class="axis" text-anchor="end">{escape(label)}</text>'
                     f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{bar - 6}" fill="{PALETTE[0]}"/>'
                     f'<text x="{left + w + 6:.1f}" y="{y + bar * 0.68:.1f}" class="legend">{value:,}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
