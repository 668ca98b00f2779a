"""What a finished backtest looks like outside the live page: metric formatting shared with the
pages, server-side SVG charts, the self-contained HTML report and the CSV of trades.

The HTML report is one file: inline CSS and inline SVG, no script, no font, no external link,
so it opens offline and can be mailed. The charts are drawn here (plain SVG polylines and
rectangles with labelled axes), from the downsampled curves the backtest stores.
"""

import csv
import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from apps.backtests import selectors, svg
from apps.backtests.models import Backtest, BacktestTrade
from apps.strategies.services import rules_as_text

# --- metrics --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    kind: str  # "money" | "pct" | "ratio" | "int" | "bars"
    signed: bool = False  # colour green/red by sign


METRICS: tuple[Metric, ...] = (
    Metric("final_equity", "Final equity", "money"),
    Metric("total_return", "Total return", "pct", True),
    Metric("cagr", "CAGR", "pct", True),
    Metric("volatility", "Volatility (annualised)", "pct"),
    Metric("sharpe", "Sharpe ratio", "ratio", True),
    Metric("sortino", "Sortino ratio", "ratio", True),
    Metric("calmar", "Calmar ratio", "ratio", True),
    Metric("max_drawdown", "Max drawdown", "pct"),
    Metric("max_drawdown_duration", "Max drawdown duration", "bars"),
    Metric("trades", "Trades", "int"),
    Metric("win_rate", "Win rate", "pct"),
    Metric("profit_factor", "Profit factor", "ratio"),
    Metric("expectancy", "Expectancy (per trade)", "money", True),
    Metric("avg_win", "Average win", "money", True),
    Metric("avg_loss", "Average loss", "money", True),
    Metric("exposure", "Exposure (time in market)", "pct"),
    Metric("ulcer_index", "Ulcer index", "pct"),
    Metric("recovery_factor", "Recovery factor", "ratio"),
    Metric("buy_and_hold_return", "Buy-and-hold return", "pct", True),
    Metric("skipped_orders", "Orders skipped (size, notional)", "int"),
)
METRIC_BY_KEY = {m.key: m for m in METRICS}
DASH = "\u2013"  # en dash


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def format_value(value: Any, kind: str) -> str:
    """A metric as people read it: % for returns and drawdowns (0.1234 -> 12.34%), two
    decimals for ratios, thousands separators for money; a dash when undefined."""
    number = _number(value)
    if number is None:
        return DASH
    if kind == "pct":
        return f"{number * 100:,.2f}%"
    if kind == "money":
        return f"{number:,.2f}"
    if kind in ("int", "bars"):
        return f"{round(number):,}" + (" bars" if kind == "bars" else "")
    return f"{number:,.2f}"


def tone(value: Any) -> str:
    """CSS class for a signed number: pos, neg or '' (zero or undefined)."""
    number = _number(value)
    if number is None or number == 0:
        return ""
    return "pos" if number > 0 else "neg"


def _benchmark_metrics(backtest: Backtest) -> dict[str, Any]:
    """What buy-and-hold scores on the same bars: its return (the engine's), its final equity,
    and its max drawdown measured on the stored benchmark curve."""
    result: dict[str, Any] = {}
    bh_return = _number((backtest.metrics or {}).get("buy_and_hold_return"))
    if bh_return is not None:
        result["total_return"] = bh_return
        result["buy_and_hold_return"] = bh_return
    curve = [float(v) for v in (backtest.equity or {}).get("benchmark") or [] if _number(v) is not None]
    if curve:
        result["final_equity"] = curve[-1]
        peak, worst = curve[0], 0.0
        for value in curve:
            peak = max(peak, value)
            if peak > 0:
                worst = min(worst, value / peak - 1)
        result["max_drawdown"] = -worst
    return result


def metric_table(metrics: Mapping[str, Any], benchmark: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Metrics formatted for a table (known keys in order, then any others sorted), with the
    ``benchmark`` value beside each where it has one."""
    bench = benchmark or {}
    keys = [m.key for m in METRICS] + sorted(k for k in metrics if k not in METRIC_BY_KEY)
    rows = []
    for key in keys:
        metric = METRIC_BY_KEY.get(key, Metric(key, key.replace("_", " ").capitalize(), "ratio"))
        value = metrics.get(key)
        bench_value = bench.get(key)
        rows.append(
            {
                "key": key,
                "label": metric.label,
                "value": format_value(value, metric.kind),
                "tone": tone(value) if metric.signed else "",
                "benchmark": format_value(bench_value, metric.kind) if key in bench else "",
                "benchmark_tone": tone(bench_value) if metric.signed else "",
            }
        )
    return rows


def metric_rows(backtest: Backtest) -> list[dict[str, Any]]:
    """Every metric of a backtest, with buy-and-hold beside it where it is defined."""
    return metric_table(backtest.metrics or {}, _benchmark_metrics(backtest))


# --- the HTML report --------------------------------------------------------------------------------


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows.extend(_flatten(value, f"{name}."))
        else:
            rows.append((name, DASH if value is None else value))
    return rows


def _safe_svg(markup: str) -> SafeString:
    # svg.* builds markup from numbers and html.escape()d text only.
    return mark_safe(markup)  # noqa: S308


def equity_charts(curves: Mapping[str, Any], *, width: int = 900) -> dict[str, SafeString]:
    """Equity (with buy-and-hold when stored) and drawdown charts of stored curves
    ``{t: [epoch ms], equity, drawdown, benchmark}``, as inline SVG."""
    times = [float(t) for t in curves.get("t") or []]
    lines = [svg.Line("Strategy", curves.get("equity") or [], "#1f6fb2", width=1.8)]
    if curves.get("benchmark"):
        lines.append(svg.Line("Buy and hold", curves["benchmark"], "#9aa5b1"))
    drawdown = curves.get("drawdown") or []
    return {
        "equity": _safe_svg(
            svg.line_chart(x=times, lines=lines, y_format=partial(format_value, kind="money"), width=width,
                           title="Equity")
        ),
        "drawdown": _safe_svg(
            svg.line_chart(x=times, lines=[svg.Line("Drawdown", drawdown, "#c0392b", fill=True)],
                           y_format=partial(format_value, kind="pct"), width=width, height=170, title="Drawdown")
        ),
    }  # fmt: skip


def format_price(value: Any, digits: int = 6) -> str:
    """A price or size with about ``digits`` significant digits, at least two decimals where
    it has any (35,327.19; 0.28279; 0.00001234)."""
    number = _number(value)
    if number is None:
        return DASH
    if number == 0:
        return "0"
    decimals = max(2, min(10, digits - 1 - math.floor(math.log10(abs(number)))))
    head, _, tail = f"{number:,.{decimals}f}".partition(".")
    return f"{head}.{tail.rstrip('0').ljust(2, '0')}"


def trade_row(trade: BacktestTrade) -> dict[str, Any]:
    return {
        "number": trade.number,
        "side": trade.side,
        "entry_at": trade.entry_at,
        "entry_price": format_price(trade.entry_price),
        "exit_at": trade.exit_at,
        "exit_price": format_price(trade.exit_price) if trade.exit_price is not None else DASH,
        "size": format_price(trade.size),
        "fees": trade.fees,
        "pnl": trade.pnl,
        "pnl_tone": tone(trade.pnl),
        "return_pct": format_value(trade.return_pct, "pct"),
        "bars_held": trade.bars_held,
        "exit_reason": trade.exit_reason,
    }


def lookahead_status(backtest: Backtest) -> dict[str, str]:
    """The look-ahead check's verdict for the page and the report: state and a sentence."""
    report = backtest.lookahead or {}
    if backtest.is_lookahead_biased:
        message = str(report.get("message") or "Signals changed when future bars were removed.")
        return {"state": "biased", "message": message}
    if report:
        message = str(report.get("message") or "Signals did not change when future bars were removed.")
        return {"state": "clean", "message": message}
    return {"state": "unchecked", "message": "The look-ahead check did not run for this backtest."}


# A report lists at most this many trades: rendering 20,000 took 6.6 s and 7.2 MB, and a long
# backtest can hold 250,000. Beyond it, the first and the last half are listed with a row
# between them saying how many were left out; the CSV download has every trade.
REPORT_MAX_TRADES = 2_000


def report_trades(backtest: Backtest) -> tuple[list[dict[str, Any]], int]:
    """The trade rows of the report and the backtest's number of trades. With more than
    REPORT_MAX_TRADES: the first and the last REPORT_MAX_TRADES // 2, and between them one row
    ``{"omitted": count, "first": number, "last": number, "shown": REPORT_MAX_TRADES // 2}``
    for the trades left out. Reads at most REPORT_MAX_TRADES rows (a count, then one or two
    bounded queries)."""
    trades = selectors.backtest_trades(backtest=backtest)
    total = trades.count()
    if total <= REPORT_MAX_TRADES:
        return [trade_row(t) for t in trades[:REPORT_MAX_TRADES]], total
    half = REPORT_MAX_TRADES // 2
    head = [trade_row(t) for t in trades[:half]]
    tail = [trade_row(t) for t in list(trades.order_by("-number")[:half])[::-1]]
    gap = {
        "omitted": total - len(head) - len(tail),
        "first": head[-1]["number"] + 1,
        "last": tail[0]["number"] - 1,
        "shown": half,
    }
    return [*head, gap, *tail], total


def backtest_report_html(backtest: Backtest) -> str:
    """One self-contained HTML document for a finished backtest: settings, metrics beside
    buy-and-hold, the look-ahead status, equity and drawdown charts (inline SVG) and its trades
    (all of them up to REPORT_MAX_TRADES, else the first and the last; metrics and charts always
    cover the whole backtest). No script, font or external reference."""
    trades, trades_total = report_trades(backtest)
    rules_text: list[tuple[str, str]] = []
    if backtest.rules:
        rules_text = [(slot, text) for slot, text in rules_as_text(rules=backtest.rules).items() if text]
    return render_to_string(
        "backtests/report.html",
        {
            "backtest": backtest,
            "instrument": backtest.instrument,
            "params": sorted((backtest.params or {}).items()),
            "rules_text": rules_text,
            "settings_rows": _flatten(backtest.settings or {}),
            "metrics": metric_rows(backtest),
            "lookahead": lookahead_status(backtest),
            "charts": equity_charts(backtest.equity or {}),
            "trades": trades,
            "trades_total": trades_total,
            "generated_at": timezone.now(),
        },
    )


def report_filename(backtest: Backtest, extension: str) -> str:
    """``backtest-42-sma_cross-BTC-USDT-1h.html``: safe for any file system."""
    symbol = "".join(c if c.isalnum() else "-" for c in backtest.instrument.symbol).strip("-")
    key = "".join(c if c.isalnum() or c == "_" else "-" for c in backtest.strategy_key)
    return f"backtest-{backtest.pk}-{key}-{symbol}-{backtest.timeframe}.{extension}"


# --- the CSV of trades ------------------------------------------------------------------------------

CSV_COLUMNS = (
    "number", "side", "entry_at", "entry_price", "exit_at", "exit_price", "size", "fees", "pnl", "return_pct",
    "bars_held", "exit_reason",
)  # fmt: skip


class _Echo:
    """A file-like object whose write returns the line (csv.writer into a stream)."""

    def write(self, value: str) -> str:
        return value


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, float):
        return repr(value)
    return value


def backtest_trades_csv(backtest: Backtest) -> Iterator[str]:
    """The trades of a backtest as CSV lines (header first), streamed from the database in
    chunks. Times are ISO-8601 UTC; floats keep every digit (repr)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for trade in selectors.backtest_trades(backtest=backtest).iterator(chunk_size=2000):
        yield writer.writerow([_csv_value(getattr(trade, column)) for column in CSV_COLUMNS])


# --- research pages ---------------------------------------------------------------------------------

HEAT_STOPS = ((0.0, (192, 57, 43)), (0.5, (241, 196, 15)), (1.0, (39, 174, 96)))  # red, amber, green


def heat_colour(fraction: float) -> str:
    """A colour on the red-amber-green scale for ``fraction`` in [0, 1]."""
    fraction = min(1.0, max(0.0, fraction))
    for (f0, c0), (f1, c1) in itertools.pairwise(HEAT_STOPS):
        if fraction <= f1:
            t = (fraction - f0) / (f1 - f0)
            r, g, b = (round(a + (b_ - a) * t) for a, b_ in zip(c0, c1, strict=True))
            return f"#{r:02x}{g:02x}{b:02x}"
    return "#{:02x}{:02x}{:02x}".format(*HEAT_STOPS[-1][1])


def _axis_label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def heatmap_table(grid: Mapping[str, Any], *, x: str, y: str, steps: int = 5) -> dict[str, Any]:
    """The heat map grid of :func:`apps.backtests.research.optimise.heatmap` as table rows of
    coloured cells (highest y first), with a legend of ``steps`` colours from worst to best."""
    values = [v for row in grid["z"] for v in row if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 0.0)
    span = (high - low) or 1.0
    rows = []
    for y_value, z_row in reversed(list(zip(grid["y"], grid["z"], strict=True))):
        cells = []
        for x_value, value in zip(grid["x"], z_row, strict=True):
            label = f"{x}={_axis_label(x_value)}, {y}={_axis_label(y_value)}"
            if value is None:
                cells.append({"value": "", "colour": "", "title": f"{label}: no feasible trial"})
            else:
                cells.append(
                    {
                        "value": f"{value:.2f}",
                        "colour": heat_colour((value - low) / span),
                        "title": f"{label}: {value:.4f}",
                    }
                )
        rows.append({"y": _axis_label(y_value), "cells": cells})
    legend = [
        {"colour": heat_colour(i / (steps - 1)), "label": f"{low + span * i / (steps - 1):.2f}"} for i in range(steps)
    ]
    return {
        "x": x,
        "y": y,
        "xs": [_axis_label(v) for v in grid["x"]],
        "rows": rows,
        "legend": legend if values else [],
        "cells": sum(1 for v in values),
    }


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 21st..."""
    if 10 <= number % 100 <= 20:
        return f"{number}th"
    return f"{number}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(number % 10, 'th') }"


def monte_carlo_view(results: Mapping[str, Any]) -> dict[str, Any]:
    """What the Monte Carlo page shows of :func:`apps.backtests.research.montecarlo.monte_carlo`'s
    results: histograms of final equity and max drawdown, a percentile table, the probabilities
    of loss, and a fan of sample equity paths with percentile bands."""
    money = partial(format_value, kind="money")
    pct = partial(format_value, kind="pct")
    cash = _number(results.get("cash"))
    original = results.get("original") or {}
    final = results.get("final_equity") or {}
    drawdown = results.get("max_drawdown") or {}
    threshold = _number(results.get("loss_threshold"))
    total = results.get("total_return") or {}
    percentiles = []
    for key in final.get("percentiles") or {}:
        percentiles.append(
            {
                "p": key,
                "label": ordinal(int(float(key))),
                "final_equity": money((final.get("percentiles") or {}).get(key)),
                "total_return": pct((total.get("percentiles") or {}).get(key)),
                "total_return_tone": tone((total.get("percentiles") or {}).get(key)),
                "max_drawdown": pct((drawdown.get("percentiles") or {}).get(key)),
            }
        )
    fan = results.get("fan") or {}
    bands = {f"{ordinal(int(k[1:]))} percentile": v for k, v in fan.items() if k.startswith("p") and k[1:].isdigit()}
    paths = results.get("paths") or {}
    final_hist = final.get("histogram") or {}
    dd_hist = drawdown.get("histogram") or {}
    return {
        "final_histogram": _safe_svg(
            svg.histogram(
                edges=final_hist.get("bins") or [],
                counts=final_hist.get("counts") or [],
                x_format=money,
                markers=[("start", cash, "#7f8c8d"), ("backtest", _number(original.get("final_equity")), "#c0392b")],
                title="Final equity",
            )
        ),
        "drawdown_histogram": _safe_svg(
            svg.histogram(
                edges=dd_hist.get("bins") or [],
                counts=dd_hist.get("counts") or [],
                x_format=pct,
                colour="#c0392b",
                markers=[
                    ("backtest", _number(original.get("max_drawdown")), "#2c3e50"),
                    ("threshold", threshold, "#e67e22"),
                ],
                title="Max drawdown",
            )
        ),
        "fan": _safe_svg(
            svg.fan(
                x=[float(v) for v in fan.get("trade") or paths.get("trade") or []],
                paths=paths.get("equity") or [],
                bands=bands,
                y_format=money,
                title="Equity after each trade",
            )
        ),
        "percentiles": percentiles,
        "summary": [
            ("Simulations", f"{int(results.get('simulations') or 0):,}"),
            ("Trades per simulation", f"{int(results.get('trades') or 0):,}"),
            ("Mean final equity", money(final.get("mean"))),
            ("Std-dev of final equity", money(final.get("std"))),
            ("Worst final equity", money(final.get("min"))),
            ("Best final equity", money(final.get("max"))),
            ("Mean max drawdown", pct(drawdown.get("mean"))),
            ("Seed", str(results.get("seed", ""))),
        ],
        "probabilities": [
            ("Probability of a loss", pct(results.get("probability_of_loss"))),
            (f"Probability of losing at least {pct(threshold)}", pct(results.get("probability_of_loss_threshold"))),
            (
                f"Probability of a drawdown of {pct(threshold)} or more",
                pct(results.get("probability_of_drawdown_threshold")),
            ),
        ],
        "original": {
            "final_equity": money(original.get("final_equity")),
            "max_drawdown": pct(original.get("max_drawdown")),
            "final_equity_percentile": format_value(original.get("final_equity_percentile"), "ratio"),
            "max_drawdown_percentile": format_value(original.get("max_drawdown_percentile"), "ratio"),
        },
    }


DEGRADATION: tuple[Metric, ...] = (
    Metric("is_annualised_return", "In-sample annualised return (mean of train windows)", "pct", True),
    Metric("oos_annualised_return", "Out-of-sample annualised return (stitched)", "pct", True),
    Metric("walk_forward_efficiency", "Walk-forward efficiency (OOS / IS return)", "pct"),
    Metric("is_objective", "In-sample objective (mean)", "ratio", True),
    Metric("oos_objective", "Out-of-sample objective (mean)", "ratio", True),
    Metric("objective_ratio", "Objective kept out of sample (OOS / IS)", "pct"),
    Metric("windows_traded", "Windows with feasible parameters", "int"),
    Metric("profitable_windows", "Profitable test windows", "int"),
)


def _day(value: Any) -> str:
    """An ISO time from the research results, shortened for a table cell."""
    text = str(value or "")
    return text[:16].replace("T", " ") if text else DASH


def walk_forward_windows(windows: Any) -> list[dict[str, Any]]:
    """One table row per walk-forward window: train and test ranges, the best parameters of the
    train window, and the objective and return in sample (train) and out of sample (test)."""
    rows: list[dict[str, Any]] = []
    for window in windows if isinstance(windows, list) else []:
        if not isinstance(window, Mapping):
            continue
        is_metrics = window.get("is_metrics") or {}
        oos_metrics = window.get("oos_metrics") or {}
        params = window.get("best_params")
        rows.append(
            {
                "number": int(window.get("number", len(rows))) + 1,
                "train": f"{_day(window.get('train_from'))} → {_day(window.get('train_to'))}",
                "train_bars": window.get("train_bars"),
                "test": f"{_day(window.get('test_from'))} → {_day(window.get('test_to'))}",
                "test_bars": window.get("test_bars"),
                "params": sorted(params.items()) if isinstance(params, Mapping) else [],
                "is_value": format_value(window.get("is_value"), "ratio"),
                "oos_value": format_value(window.get("oos_value"), "ratio"),
                "oos_tone": tone(window.get("oos_value")),
                "is_return": format_value(is_metrics.get("total_return"), "pct"),
                "oos_return": format_value(oos_metrics.get("total_return"), "pct"),
                "oos_return_tone": tone(oos_metrics.get("total_return")),
                "oos_trades": format_value(oos_metrics.get("trades"), "int"),
                "efficiency": format_value(window.get("efficiency"), "pct"),
            }
        )
    return rows


def walk_forward_summary(metrics: Mapping[str, Any], degradation: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The stitched out-of-sample metrics and the in-sample vs out-of-sample degradation figures
    (read from ``degradation``, else from a ``degradation`` entry or the keys of ``metrics``)."""
    nested = metrics.get("degradation")
    source: Mapping[str, Any] = degradation or (nested if isinstance(nested, Mapping) else metrics)
    stitched = {k: v for k, v in metrics.items() if k != "degradation" and k not in {m.key for m in DEGRADATION}}
    return {
        "metrics": [row for row in metric_table(stitched) if row["value"] != DASH or row["key"] in stitched],
        "degradation": [
            {
                "key": m.key,
                "label": m.label,
                "value": format_value(source.get(m.key), m.kind),
                "tone": tone(source.get(m.key)) if m.signed else "",
            }
            for m in DEGRADATION
            if m.key in source
        ],
    }
