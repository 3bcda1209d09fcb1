"""Server-rendered SVG charts (no JavaScript): stacked bars per day and a balance line, with axes,
USD labels, a legend, and a <title> on each bar or point that browsers show on hover.

Pure functions of integer nano-USD figures; the markup they return is escaped here and marked safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from html import escape

from markupsafe import Markup

from tollway.money import format_usd

# Distinct on white and for the common colour-vision deficiencies (Okabe-Ito, then greys).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000", "#999999")
_WIDTH = 760
_LEFT = 80  # room for the USD labels of the y axis
_RIGHT = 12
_TOP = 12
_PLOT_HEIGHT = 200
_AXIS_LABELS = 34  # room for the dates under the x axis
_LEGEND_ROW = 18


@dataclass(frozen=True, slots=True)
class Segment:
    """One series' part of one day's bar."""

    series: str
    amount_nanos: int
    detail: str = ""  # more for the hover title, e.g. "3 requests"


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 x 10^k nano-USD at or above `value` (at least 1 nano), for the axis top."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def usd_label(nanos: int) -> str:
    """A USD axis label, exact: $0, $0.05, $1.20, $0.000002, -$0.10."""
    if nanos == 0:
        return "$0"
    return ("-$" if nanos < 0 else "$") + format_usd(abs(nanos))


def _axes(days: list[date], floor_nanos: int, top_nanos: int, plot_width: int) -> list[str]:
    parts = [
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + _PLOT_HEIGHT}" stroke="#444"/>',
        f'<line x1="{_LEFT}" y1="{_TOP + _PLOT_HEIGHT}" x2="{_LEFT + plot_width}" y2="{_TOP + _PLOT_HEIGHT}" '
        'stroke="#444"/>',
    ]
    for tick in range(5):
        amount = floor_nanos + (top_nanos - floor_nanos) * tick // 4
        y = _TOP + _PLOT_HEIGHT - _PLOT_HEIGHT * tick // 4
        parts.append(f'<line x1="{_LEFT - 4}" y1="{y}" x2="{_LEFT + plot_width}" y2="{y}" stroke="#ddd"/>')
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y + 4}" text-anchor="end" font-size="11" class="y-label">'
            f"{escape(usd_label(amount))}</text>"
        )
    slot = plot_width / max(len(days), 1)
    for index, day in enumerate(days):
        if index % 5 == 0 or index == len(days) - 1:
            x = _LEFT + slot * index + slot / 2
            parts.append(
                f'<text x="{x:.1f}" y="{_TOP + _PLOT_HEIGHT + 16}" text-anchor="middle" font-size="11" '
                f'class="x-label">{day.strftime("%d %b")}</text>'
            )
    parts.append(
        f'<text x="{_LEFT + plot_width / 2:.1f}" y="{_TOP + _PLOT_HEIGHT + 30}" text-anchor="middle" '
        'font-size="11">UTC day</text>'
    )
    return parts


def _legend(names: list[str], y: int) -> list[str]:
    parts = []
    for index, name in enumerate(names):
        row, column = divmod(index, 3)
        x = _LEFT + column * 226
        top = y + row * _LEGEND_ROW
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<g class="legend-item"><rect x="{x}" y="{top}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{x + 18}" y="{top + 10}" font-size="12">{escape(name[:36])}</text></g>'
        )
    return parts


def stacked_bars(days: list[date], bars: dict[date, list[Segment]], label: str) -> Markup:
    """Spend per day, each bar stacked by series (model or key), every segment titled with its figures."""
    names = sorted({segment.series for segments in bars.values() for segment in segments})
    colours = {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(names)}
    totals = {day: sum(s.amount_nanos for s in bars.get(day, [])) for day in days}
    top_nanos = nice_ceiling(max(totals.values(), default=0) or 1)
    plot_width = _WIDTH - _LEFT - _RIGHT
    slot = plot_width / max(len(days), 1)
    legend_rows = (len(names) + 2) // 3
    height = _TOP + _PLOT_HEIGHT + _AXIS_LABELS + 10 + legend_rows * _LEGEND_ROW
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(label)}" class="chart" '
        f'viewBox="0 0 {_WIDTH} {height}" width="100%" preserveAspectRatio="xMinYMin meet">',
        f"<title>{escape(label)}</title>",
        *_axes(days, 0, top_nanos, plot_width),
    ]
    for index, day in enumerate(days):
        base: float = _TOP + _PLOT_HEIGHT
        x = _LEFT + slot * index + slot * 0.15
        for segment in sorted(bars.get(day, []), key=lambda s: names.index(s.series)):
            if segment.amount_nanos <= 0:
                continue
            bar_height = max(1.0, _PLOT_HEIGHT * segment.amount_nanos / top_nanos)
            base_y = base - bar_height
            detail = f" ({segment.detail})" if segment.detail else ""
            title = f"{day.isoformat()} · {segment.series}: {format_usd(segment.amount_nanos)} USD{detail}"
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{base_y:.1f}" width="{slot * 0.7:.1f}" height="{bar_height:.1f}" '
                f'fill="{colours[segment.series]}"><title>{escape(title)}</title></rect>'
            )
            base = base_y
    if not names:
        parts.append(
            f'<text x="{_LEFT + plot_width / 2:.1f}" y="{_TOP + _PLOT_HEIGHT / 2:.1f}" text-anchor="middle" '
            'font-size="13">No spend in these 30 days.</text>'
        )
    parts.extend(_legend(names, _TOP + _PLOT_HEIGHT + _AXIS_LABELS + 6))
    parts.append("</svg>")
    return Markup("".join(parts))


def balance_line(points: list[tuple[date, int]], label: str) -> Markup:
    """The balance at the end of each day: a line with a titled point per day, over a zero-based axis."""
    plot_width = _WIDTH - _LEFT - _RIGHT
    days = [day for day, _amount in points]
    highest = max((amount for _day, amount in points), default=0)
    lowest = min((amount for _day, amount in points), default=0)
    top_nanos = nice_ceiling(max(highest, 1))
    floor_nanos = -nice_ceiling(-lowest) if lowest < 0 else 0
    span = top_nanos - floor_nanos
    height = _TOP + _PLOT_HEIGHT + _AXIS_LABELS + 4
    slot = plot_width / max(len(points), 1)

    def y_of(amount: int) -> float:
        return _TOP + _PLOT_HEIGHT - _PLOT_HEIGHT * (amount - floor_nanos) / span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(label)}" class="chart" '
        f'viewBox="0 0 {_WIDTH} {height}" width="100%" preserveAspectRatio="xMinYMin meet">',
        f"<title>{escape(label)}</title>",
    ]
    axes = _axes(days, floor_nanos, top_nanos, plot_width)
    parts.extend(axes)
    coordinates = [(_LEFT + slot * index + slot / 2, y_of(amount)) for index, (_day, amount) in enumerate(points)]
    if coordinates:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coordinates)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>')
    for (x, y), (day, amount) in zip(coordinates, points, strict=True):
        title = f"{day.isoformat()}: balance {format_usd(amount)} USD"
        parts.append(
            f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{PALETTE[0]}">'
            f"<title>{escape(title)}</title></circle>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
