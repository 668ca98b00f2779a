"""Charts drawn on the server as inline SVG: line charts (equity, drawdown), histograms and
fans of simulated paths. They need no script and no font, so they work in the self-contained
HTML report as well as on the pages. Pure Python, no Django: every function returns markup built
from numbers and escaped text (callers mark it safe).
"""

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

FONT = "font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:11px"
AXIS = "#667788"
GRID = "#d9e0e6"

Formatter = Callable[[float], str]


@dataclass(frozen=True)
class Line:
    label: str  # empty: no legend entry
    values: Sequence[float | None]
    colour: str
    fill: bool = False  # shade between the line and zero (drawdown)
    width: float = 1.5


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values inside [low, high] (steps of 1, 2, 2.5 or 5 x 10^k)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = []
    value = math.ceil(low / step) * step
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def time_label(ms: float, span_ms: float) -> str:
    """A date for an axis (epoch ms): the day, or day and time over short spans."""
    when = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return when.strftime("%Y-%m-%d") if span_ms > 2 * 86_400_000 else when.strftime("%m-%d %H:%M")


def _segments(xs: Sequence[float], ys: Sequence[float | None]) -> list[list[tuple[float, float]]]:
    """Runs of defined points: a null breaks the line."""
    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for x, y in zip(xs, ys, strict=False):
        if y is None or not math.isfinite(y):
            if current:
                runs.append(current)
            current = []
        else:
            current.append((x, y))
    if current:
        runs.append(current)
    return runs


def _points(run: Iterable[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in run)


def _empty(title: str, width: int) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} 40" width="100%" role="img">'
        f'<text x="8" y="24" style="{FONT}" fill="{AXIS}">{html.escape(title)}: no data yet</text></svg>'
    )


def _text(x: float, y: float, text: str, *, anchor: str = "start", colour: str = AXIS) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" style="{FONT}" fill="{colour}">'
        f"{html.escape(text)}</text>"
    )


def line_chart(
    *,
    x: Sequence[float],
    lines: Sequence[Line],
    y_format: Formatter,
    x_format: Formatter | None = None,
    width: int = 900,
    height: int = 260,
    title: str = "",
) -> str:
    """A line chart: y grid with labels, six x labels (dates from epoch ms unless
    ``x_format``), a legend, and each line (shaded to zero when ``fill``)."""
    left, right, top, bottom = 76, 14, 24, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for line in lines for v in line.values if v is not None and math.isfinite(v)]
    if not x or not values:
        return _empty(title, width)
    y_low, y_high = min(values), max(values)
    if any(line.fill for line in lines):
        y_low, y_high = min(y_low, 0.0), max(y_high, 0.0)
    if y_high == y_low:
        y_low, y_high = y_low - abs(y_low or 1) * 0.05, y_high + abs(y_high or 1) * 0.05
    pad = (y_high - y_low) * 0.04
    y_low = y_low - pad if y_low != 0 else y_low
    y_high = y_high + pad if y_high != 0 else y_high
    x_low, x_high = min(x), max(x)
    x_span = (x_high - x_low) or 1.0

    def sx(value: float) -> float:
        return left + (value - x_low) / x_span * plot_w

    def sy(value: float) -> float:
        return top + (y_high - value) / (y_high - y_low) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{html.escape(title)}" class="svg-chart">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="{GRID}"/>',
    ]
    for tick in nice_ticks(y_low, y_high):
        y = sy(tick)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(_text(left - 6, y + 4, y_format(tick), anchor="end"))
    for i in range(6):
        value = x_low + x_span * i / 5
        label = x_format(value) if x_format else time_label(value, x_span)
        anchor = "start" if i == 0 else "end" if i == 5 else "middle"
        parts.append(_text(sx(value), height - 8, label, anchor=anchor))
    xs = [sx(v) for v in x]
    zero = sy(0.0) if y_low <= 0 <= y_high else sy(y_low)
    for line in lines:
        ys = [None if v is None or not math.isfinite(v) else sy(v) for v in line.values]
        for run in _segments(xs, ys):
            if line.fill:
                area = [(run[0][0], zero), *run, (run[-1][0], zero)]
                parts.append(f'<polygon points="{_points(area)}" fill="{line.colour}" fill-opacity="0.25"/>')
            parts.append(
                f'<polyline points="{_points(run)}" fill="none" stroke="{line.colour}" '
                f'stroke-width="{line.width}" stroke-linejoin="round"/>'
            )
    legend_x = left + 8.0
    for line in lines:
        if not line.label:
            continue
        parts.append(f'<rect x="{legend_x:.1f}" y="7" width="10" height="10" fill="{line.colour}"/>')
        parts.append(_text(legend_x + 14, 16, line.label, colour="#334455"))
        legend_x += 26 + 6.5 * len(line.label)
    parts.append("</svg>")
    return "".join(parts)


def histogram(
    *,
    edges: Sequence[float | None],
    counts: Sequence[float],
    x_format: Formatter,
    colour: str = "#3f7fbf",
    markers: Sequence[tuple[str, float | None, str]] = (),
    width: int = 520,
    height: int = 240,
    title: str = "",
) -> str:
    """Bars over ``edges`` (one more than ``counts``) with a count axis, x labels at both ends
    and the middle, and vertical ``markers`` (label, x, colour) inside the range."""
    left, right, top, bottom = 52, 14, 24, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    clean = [float(e) for e in edges if e is not None and math.isfinite(e)]
    if len(clean) != len(counts) + 1 or not counts:
        return _empty(title, width)
    x_low, x_high = clean[0], clean[-1]
    x_span = (x_high - x_low) or 1.0
    peak = max(max(counts), 1)

    def sx(value: float) -> float:
        return left + (value - x_low) / x_span * plot_w

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{html.escape(title)}" class="svg-chart">',
    ]
    for tick in nice_ticks(0, peak, 4):
        y = top + plot_h - tick / peak * plot_h
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(_text(left - 6, y + 4, f"{tick:,.0f}", anchor="end"))
    for i, count in enumerate(counts):
        x0, x1 = sx(clean[i]), sx(clean[i + 1])
        h = count / peak * plot_h
        tip = f"{x_format(clean[i])} to {x_format(clean[i + 1])}: {count:,.0f}"
        parts.append(
            f'<rect x="{x0:.1f}" y="{top + plot_h - h:.1f}" width="{max(0.5, x1 - x0 - 1):.1f}" '
            f'height="{h:.1f}" fill="{colour}"><title>{html.escape(tip)}</title></rect>'
        )
    for value, anchor in ((x_low, "start"), ((x_low + x_high) / 2, "middle"), (x_high, "end")):
        parts.append(_text(sx(value), height - 8, x_format(value), anchor=anchor))
    shown = [(label, value, mark) for label, value, mark in markers if value is not None and x_low <= value <= x_high]
    for row, (label, value, mark) in enumerate(shown):
        x_pos = sx(value)
        parts.append(
            f'<line x1="{x_pos:.1f}" x2="{x_pos:.1f}" y1="{top}" y2="{top + plot_h}" stroke="{mark}" '
            f'stroke-width="1.5" stroke-dasharray="4 3"/>'
        )
        # Labels on rows of their own (markers can sit close), on the side with room.
        right_half = x_pos > left + plot_w * 0.6
        x_text = x_pos - 4 if right_half else x_pos + 4
        parts.append(_text(x_text, top + 11 + 13 * row, label, anchor="end" if right_half else "start", colour=mark))
    parts.append("</svg>")
    return "".join(parts)


def fan(
    *,
    x: Sequence[float],
    paths: Sequence[Sequence[float | None]],
    bands: Mapping[str, Sequence[float | None]],
    y_format: Formatter,
    width: int = 900,
    height: int = 280,
    title: str = "",
) -> str:
    """Sample paths (faint, no legend) under percentile ``bands`` (label -> values at ``x``)."""
    lines = [Line("", list(path), "#8fb3da", width=0.8) for path in paths]
    colours = ["#c0392b", "#e67e22", "#2c3e50", "#16a085", "#27ae60"]
    for i, (label, values) in enumerate(bands.items()):
        lines.append(Line(label, list(values), colours[i % len(colours)], width=2))
    return line_chart(
        x=x, lines=lines, y_format=y_format, x_format=lambda v: f"{v:,.0f}", width=width, height=height, title=title
    )
