"""The model page's charts, drawn on the server as inline SVG (no script, so nothing for the CSP
to allow): metrics per version, the drift history with its threshold, the out-of-sample equity
curve (apps.backtests.svg's line chart), and the feature importances as rows of bars.

Every function takes plain numbers and returns markup built from numbers and escaped text
(the caller marks it safe) or, for the importances, rows for the template.
"""

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apps.backtests import svg

AXIS = svg.AXIS
GRID = svg.GRID
FONT = svg.FONT
COLOURS = {"auc": "#1f77b4", "accuracy": "#2ca02c", "log_loss": "#d62728", "sharpe": "#9467bd"}


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    values: Sequence[float | None]
    colour: str
    dot_colours: Sequence[str] | None = None  # per point, e.g. red where drift was found


@dataclass(frozen=True)
class Guide:
    """A horizontal dashed line (a threshold) with its label."""

    label: str
    value: float
    colour: str


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _empty(title: str, width: int) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} 40" width="100%" role="img" class="svg-chart">'
        f'<text x="8" y="24" style="{FONT}" fill="{AXIS}">{html.escape(title)}: no data yet</text></svg>'
    )


def _text(x: float, y: float, text: str, *, anchor: str = "start", colour: str = AXIS) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" style="{FONT}" fill="{colour}">'
        f"{html.escape(text)}</text>"
    )


def points_chart(
    *,
    x_labels: Sequence[str],
    series: Sequence[Series],
    y_format: Any,
    guides: Sequence[Guide] = (),
    x_positions: Sequence[float] | None = None,
    width: int = 560,
    height: int = 280,
    title: str = "",
    chart_id: str = "",
    max_labels: int = 8,
) -> str:
    """Lines through dots (a single point still shows), one x slot per label (or at
    ``x_positions``, e.g. times), a y grid, dashed ``guides`` and a legend. Each dot carries a
    ``<title>`` with its label and value, and ``data-series`` for tests and styling."""
    left, right, top, bottom = 64, 16, 26, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in series for v in (_finite(x) for x in s.values) if v is not None]
    values += [g.value for g in guides]
    if not x_labels or not values:
        return _empty(title, width)
    y_low, y_high = min(values), max(values)
    if y_high == y_low:
        y_low, y_high = y_low - (abs(y_low) or 1) * 0.05, y_high + (abs(y_high) or 1) * 0.05
    pad = (y_high - y_low) * 0.08
    y_low, y_high = y_low - pad, y_high + pad
    n = len(x_labels)
    if x_positions is not None and len(x_positions) == n and n > 1 and max(x_positions) > min(x_positions):
        x_low, x_span = min(x_positions), max(x_positions) - min(x_positions)
        xs = [left + 12 + (p - x_low) / x_span * (plot_w - 24) for p in x_positions]
    else:
        xs = [left + plot_w * (i + 0.5) / n for i in range(n)]

    def sy(value: float) -> float:
        return top + (y_high - value) / (y_high - y_low) * plot_h

    ident = f' id="{html.escape(chart_id)}"' if chart_id else ""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg"{ident} viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{html.escape(title)}" class="svg-chart" data-points="{n}">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="{GRID}"/>',
    ]
    for tick in svg.nice_ticks(y_low, y_high):
        y = sy(tick)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(_text(left - 6, y + 4, y_format(tick), anchor="end"))
    step = max(1, math.ceil(n / max_labels))
    for i in range(0, n, step):
        parts.append(_text(xs[i], height - 8, x_labels[i], anchor="middle"))
    for guide in guides:
        y = sy(guide.value)
        parts.append(
            f'<line class="guide" x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{guide.colour}" stroke-width="1.5" stroke-dasharray="6 4"/>'
        )
        parts.append(_text(left + plot_w - 4, y - 4, f"{guide.label} {y_format(guide.value)}", anchor="end",
                           colour=guide.colour))  # fmt: skip
    for s in series:
        points = [(xs[i], _finite(v)) for i, v in enumerate(s.values)]
        run: list[str] = []
        for x, v in points:
            if v is None:
                if len(run) > 1:
                    parts.append(_polyline(run, s.colour))
                run = []
                continue
            run.append(f"{x:.1f},{sy(v):.1f}")
        if len(run) > 1:
            parts.append(_polyline(run, s.colour))
        for i, (x, v) in enumerate(points):
            if v is None:
                continue
            dot = s.dot_colours[i] if s.dot_colours else s.colour
            tip = f"{x_labels[i]} · {s.label}: {y_format(v)}"
            parts.append(
                f'<circle cx="{x:.1f}" cy="{sy(v):.1f}" r="3.5" fill="{dot}" data-series="{html.escape(s.key)}">'
                f"<title>{html.escape(tip)}</title></circle>"
            )
    legend_x = left + 8.0
    for s in series:
        parts.append(f'<rect x="{legend_x:.1f}" y="8" width="10" height="10" fill="{s.colour}"/>')
        parts.append(_text(legend_x + 14, 17, s.label, colour="#334455"))
        legend_x += 28 + 6.5 * len(s.label)
    parts.append("</svg>")
    return "".join(parts)


def _polyline(points: list[str], colour: str) -> str:
    return (
        f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" stroke-width="1.8" '
        'stroke-linejoin="round"/>'
    )


def metrics_chart(history: Sequence[Mapping[str, Any]]) -> str:
    """AUC, accuracy and log loss of each trained version (oldest first), one slot per version."""
    rows = [r for r in history if any(_finite(r.get(k)) is not None for k in ("auc", "accuracy", "log_loss"))]
    return points_chart(
        x_labels=[f"v{r['number']}" for r in rows],
        series=[
            Series("auc", "AUC", [r.get("auc") for r in rows], COLOURS["auc"]),
            Series("accuracy", "Accuracy", [r.get("accuracy") for r in rows], COLOURS["accuracy"]),
            Series("log_loss", "Log loss", [r.get("log_loss") for r in rows], COLOURS["log_loss"]),
        ],
        y_format=lambda v: f"{v:.3f}",
        guides=[Guide("chance AUC", 0.5, "#8899aa")] if rows else [],
        title="Out-of-sample metrics per version",
        chart_id="metrics-svg",
    )


def drift_chart(history: Sequence[Mapping[str, Any]], *, threshold: float) -> str:
    """The largest PSI of each drift check over time, red where it crossed ``threshold``."""
    times = [r["checked_at"] for r in history]
    ms = [t.timestamp() * 1000 for t in times]
    span = (max(ms) - min(ms)) if len(ms) > 1 else 0.0
    return points_chart(
        x_labels=[svg.time_label(m, span) for m in ms],
        x_positions=ms,
        series=[
            Series(
                "max_psi",
                "Largest PSI",
                [r.get("max_psi") for r in history],
                "#1f77b4",
                dot_colours=["#d62728" if r.get("is_drift") else "#1f77b4" for r in history],
            )
        ],
        y_format=lambda v: f"{v:.3f}",
        guides=[Guide("threshold", float(threshold), "#d62728")],
        title="Drift: largest PSI per check",
        chart_id="drift-svg",
        max_labels=5,
    )


def equity_chart(equity: Sequence[Sequence[float]]) -> str:
    """The out-of-sample backtest's equity points [[ms, value], ...]."""
    points = [(float(p[0]), _finite(p[1])) for p in equity if len(p) >= 2]
    return svg.line_chart(
        x=[p[0] for p in points],
        lines=[svg.Line("Out-of-sample equity", [p[1] for p in points], "#1f77b4")],
        y_format=lambda v: f"{v:,.0f}",
        width=720,
        height=320,
        title="Out-of-sample backtest equity",
    )


def importance_rows(importances: Mapping[str, Any], *, labels: Mapping[str, str], limit: int = 20) -> list[dict]:
    """The largest importances (by size) as rows with a bar width in % of the largest."""
    values = [(name, _finite(v)) for name, v in (importances or {}).items()]
    ranked = sorted(((n, v) for n, v in values if v is not None), key=lambda item: -abs(item[1]))[:limit]
    peak = max((abs(v) for _, v in ranked), default=0.0)
    return [
        {
            "name": name,
            "label": labels.get(name, name),
            "value": value,
            "width": round(abs(value) / peak * 100, 1) if peak > 0 else 0.0,
            "negative": value < 0,
        }
        for name, value in ranked
    ]
