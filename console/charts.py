"""Server-rendered SVG bar charts, readable without colour.

Each series has its own fill pattern (solid, diagonal hatching, dots, cross-hatching) as
well as its own shade, every bar carries its value as a label, and the chart has a
``<title>`` and ``<desc>`` for screen readers; the page puts the numbers beside it as a
table. No script, no style attribute (the CSP has no ``unsafe-inline``). Every text is
escaped here: the result is markup safe to insert as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
HEIGHT = 280
MARGIN_LEFT = 48
MARGIN_BOTTOM = 56
MARGIN_TOP = 36
PATTERNS = ("solid", "hatch", "dots", "cross")
SHADES = ("#0b5cad", "#8a3b12", "#1d6b2f", "#5b2a86")


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float]


@dataclass(frozen=True, slots=True)
class Chart:
    """``categories`` along the x axis; one bar per series in each; ``unit`` is shown
    after each value ("%" for rates)."""

    key: str
    title: str
    description: str
    categories: Sequence[str]
    series: Sequence[Series]
    unit: str = ""

    @property
    def empty(self) -> bool:
        return not self.categories or all(not any(s.values) for s in self.series)


def format_value(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.0f}%" if value == int(value) else f"{value:.1f}%"
    return f"{value:g}"


def _pattern_defs(key: str) -> str:
    parts = []
    for index, (pattern, shade) in enumerate(zip(PATTERNS, SHADES, strict=True)):
        pid = f"{key}-p{index}"
        if pattern == "solid":
            body = f'<rect width="8" height="8" fill="{shade}"/>'
        elif pattern == "hatch":
            body = (
                f'<rect width="8" height="8" fill="#fff"/>'
                f'<path d="M-2,2 l4,-4 M0,8 l8,-8 M6,10 l4,-4" stroke="{shade}" '
                'stroke-width="2.5"/>'
            )
        elif pattern == "dots":
            body = (
                f'<rect width="8" height="8" fill="#fff"/>'
                f'<circle cx="4" cy="4" r="2.2" fill="{shade}"/>'
            )
        else:
            body = (
                f'<rect width="8" height="8" fill="#fff"/>'
                f'<path d="M0,0 l8,8 M8,0 l-8,8" stroke="{shade}" stroke-width="1.8"/>'
            )
        parts.append(
            f'<pattern id="{pid}" width="8" height="8" patternUnits="userSpaceOnUse">'
            f"{body}</pattern>"
        )
    return "<defs>" + "".join(parts) + "</defs>"


def render_bar_chart(
    chart: Chart, *, width: int = WIDTH, height: int = HEIGHT, labels: int = 24
) -> Markup:
    """The chart as an ``<svg>`` element (grouped bars, direct labels, legend).
    ``width`` and ``height`` are the drawing's own units (the text is as large in a
    smaller one drawn at the same size: the dashboard's small charts); each bar carries
    its value while there are at most ``labels`` bars."""
    key = escape(chart.key)
    series = list(chart.series)[: len(PATTERNS)]
    top = max((v for s in series for v in s.values), default=0.0)
    scale_top = 100.0 if chart.unit == "%" else max(top, 1.0)
    plot_w = width - MARGIN_LEFT - 8
    plot_h = height - MARGIN_TOP - MARGIN_BOTTOM
    groups = max(len(chart.categories), 1)
    group_w = plot_w / groups
    bar_w = max(min(group_w * 0.8 / max(len(series), 1), 40.0), 2.0)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{key}-title {key}-desc">',
        f'<title id="{key}-title">{escape(chart.title)}</title>',
        f'<desc id="{key}-desc">{escape(chart.description)}</desc>',
        _pattern_defs(str(key)),
    ]
    base_y = MARGIN_TOP + plot_h
    out.append(
        f'<line x1="{MARGIN_LEFT}" y1="{base_y}" x2="{width - 8}" y2="{base_y}" stroke="#1b1b1f"/>'
    )
    out.append(
        f'<text x="{MARGIN_LEFT - 6}" y="{MARGIN_TOP + 4}" text-anchor="end" font-size="11" '
        f'fill="#1b1b1f">{escape(format_value(scale_top, chart.unit))}</text>'
        f'<text x="{MARGIN_LEFT - 6}" y="{base_y}" text-anchor="end" font-size="11" '
        f'fill="#1b1b1f">0</text>'
    )
    for gi, category in enumerate(chart.categories):
        gx = MARGIN_LEFT + gi * group_w
        inner = (group_w - bar_w * len(series)) / 2
        for si, one in enumerate(series):
            value = float(one.values[gi]) if gi < len(one.values) else 0.0
            h = 0.0 if scale_top == 0 else plot_h * min(value, scale_top) / scale_top
            x = gx + inner + si * bar_w
            y = base_y - h
            label = f"{one.name}, {category}: {format_value(value, chart.unit)}"
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 1:.1f}" height="{h:.1f}" '
                f'fill="url(#{key}-p{si})" stroke="{SHADES[si]}">'
                f"<title>{escape(label)}</title></rect>"
            )
            if len(chart.categories) * len(series) <= labels:
                out.append(
                    f'<text x="{x + bar_w / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle" '
                    f'font-size="10" fill="#1b1b1f">'
                    f"{escape(format_value(value, chart.unit))}</text>"
                )
        every = max(1, -(-len(chart.categories) * 56 // plot_w))  # ~56 units per label
        if gi % every == 0:
            out.append(
                f'<text x="{gx + group_w / 2:.1f}" y="{base_y + 14}" text-anchor="middle" '
                f'font-size="10" fill="#1b1b1f">{escape(category)}</text>'
            )
    legend_y = height - 18
    step = min(150, (width - MARGIN_LEFT) // max(len(series), 1))
    for si, one in enumerate(series):
        lx = MARGIN_LEFT + si * step
        out.append(
            f'<rect x="{lx}" y="{legend_y - 10}" width="14" height="14" fill="url(#{key}-p{si})" '
            f'stroke="{SHADES[si]}"/><text x="{lx + 20}" y="{legend_y + 1}" font-size="12" '
            f'fill="#1b1b1f">{escape(one.name)}</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704  (every text above went through escape())
