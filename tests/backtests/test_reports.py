"""The self-contained HTML report, the metric formatting and the server-side SVG charts.

The report is checked as a mail client would open it: one HTML document that parses, with no
script and nothing fetched from anywhere (no http(s) src/href, no stylesheet link, no url()).
"""

import math
import re
from datetime import UTC, datetime, timedelta
from html import unescape
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.backtests import reports, svg
from apps.backtests.models import Backtest, BacktestTrade, JobStatus
from apps.backtests.research.montecarlo import monte_carlo
from apps.marketdata import services as market_services
from apps.marketdata.models import Instrument
from tests.backtests import platform_support, test_views
from tests.backtests.platform_support import Sent
from tests.backtests.test_views import create_backtest, drive

# Fixtures: task sends recorded (the platform's), real candles (the view tests').
sent = platform_support.sent
market = test_views.market

VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source", "track", "embed"}
SVG_LEAVES = {"rect", "line", "polyline", "polygon", "path", "circle", "text", "title"}


class Document(HTMLParser):
    """Collects tags and attributes, and checks that elements close in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Document:
    document = Document()
    document.feed(html)
    document.close()
    return document


@pytest.fixture
def finished(db: Any, alice: Any, market: Any, sent: Sent, django_capture_on_commit_callbacks: Any) -> Backtest:
    backtest = create_backtest(
        alice, market, django_capture_on_commit_callbacks, settings={"cash": 10_000, "exits": {"stop_loss": 0.03}}
    )
    drive(sent, django_capture_on_commit_callbacks)
    backtest.refresh_from_db()
    assert backtest.status == JobStatus.SUCCEEDED, backtest.error
    return backtest


# --- the report -----------------------------------------------------------------------------------


def test_report_is_one_self_contained_document(finished):
    html = reports.backtest_report_html(finished)
    document = parse(html)

    assert html.startswith("<!DOCTYPE html>")
    assert document.errors == [] and document.stack == []
    tags = [tag for tag, _ in document.tags]
    assert "script" not in tags and "link" not in tags and "img" not in tags and "iframe" not in tags
    for tag, attrs in document.tags:
        for name in ("src", "href", "xlink:href", "action"):
            value = attrs.get(name) or ""
            assert not re.match(r"\s*(https?:)?//", value), f"<{tag} {name}={value}> fetches from outside"
    assert "url(" not in html and "@import" not in html and "@font-face" not in html
    assert tags.count("svg") == 2  # equity and drawdown, drawn inline


def test_report_holds_the_settings_metrics_look_ahead_status_and_every_trade(finished):
    html = reports.backtest_report_html(finished)
    text = unescape(html)

    trades = list(finished.trades.order_by("number"))
    body = html.split('id="trades"')[1].split("</table>")[0]
    rows = re.findall(r"<tr><td class=\"num\">(\d+)</td>", body)
    assert [int(n) for n in rows] == [t.number for t in trades]
    assert "left out" not in text and 'id="trades-omitted"' not in html
    # Every metric, formatted as the page formats it.
    metrics_table = html.split('id="metrics"')[1].split("</table>")[0]
    for key, value in finished.metrics.items():
        row = metrics_table.split(f'data-metric="{key}"')[1].split("</tr>")[0]
        if isinstance(value, float) and key in ("total_return", "max_drawdown", "win_rate"):
            shown = unescape(re.findall(r'<td class="num[^"]*">([^<]*)</td>', row)[0])
            assert float(shown.rstrip("%").replace(",", "")) == pytest.approx(value * 100, abs=0.005)
    # Settings as stored (the stop loss the backtest ran with) and the look-ahead verdict.
    assert "exits.stop_loss" in text and "0.03" in text
    assert 'class="banner clean"' in html and "Look-ahead check passed" in text
    # The strategy and its parameters.
    for name, value in finished.params.items():
        assert f'<th>{name}</th><td class="num">{value}</td>' in html


def test_report_flags_a_biased_backtest(finished):
    Backtest.objects.filter(pk=finished.pk).update(
        is_lookahead_biased=True, lookahead={"is_biased": True, "message": "enter_long changed at 3 bars."}
    )
    finished.refresh_from_db()
    html = reports.backtest_report_html(finished)
    assert 'class="banner biased"' in html and "enter_long changed at 3 bars." in html


def test_equity_chart_draws_the_stored_curve(finished):
    charts = reports.equity_charts(finished.equity)
    equity = str(charts["equity"])
    lines = re.findall(r'<polyline points="([^"]+)"', equity)
    assert len(lines) == 2  # strategy and buy-and-hold, no gaps
    points = [tuple(map(float, p.split(","))) for p in lines[0].split()]
    values = finished.equity["equity"]
    assert len(points) == len(values)
    # Higher equity is drawn higher (smaller y), point for point.
    best, worst = int(np.argmax(values)), int(np.argmin(values))
    assert points[best][1] == min(p[1] for p in points) and points[worst][1] == max(p[1] for p in points)
    # x follows time from the left edge to the right.
    assert [p[0] for p in points] == sorted(p[0] for p in points)


def backtest_with_trades(owner: Any, count: int) -> Backtest:
    """A finished backtest with ``count`` stored trades (numbered 1..count), no engine run."""
    instrument = market_services.instrument_get_or_create(venue="binance", symbol="BTC/USDT")
    backtest = Backtest.objects.create(
        owner=owner,
        strategy_key="sma_cross",
        params={"fast": 10, "slow": 30},
        instrument=instrument,
        timeframe="1h",
        status=JobStatus.SUCCEEDED,
        metrics={"trades": count, "total_return": 0.25},
    )
    start = datetime(2021, 1, 1, tzinfo=UTC)
    BacktestTrade.objects.bulk_create(
        BacktestTrade(
            backtest=backtest,
            number=number,
            side=BacktestTrade.Side.LONG,
            entry_at=start + timedelta(hours=2 * number),
            entry_price=100.0 + number,
            exit_at=start + timedelta(hours=2 * number + 1),
            exit_price=101.0 + number,
            size=1.0,
            pnl=1.0,
            return_pct=0.01,
            bars_held=1,
            exit_reason="signal",
        )
        for number in range(1, count + 1)
    )
    return backtest


def listed_trades(html: str) -> list[int]:
    body = html.split('id="trades"')[1].split("</table>")[0]
    return [int(n) for n in re.findall(r"<tr><td class=\"num\">(\d+)</td>", body)]


def test_report_of_many_trades_lists_the_first_and_last_thousand_and_says_how_many_are_left_out(alice):
    # given: more trades than a report lists
    backtest = backtest_with_trades(alice, 2_500)

    # when
    with CaptureQueriesContext(connection) as queries:
        html = reports.backtest_report_html(backtest)

    # then: trades 1..1,000 and 1,501..2,500, and one row between them for the 500 left out
    listed = listed_trades(html)
    assert listed == [*range(1, 1_001), *range(1_501, 2_501)]
    assert {1, 1_000, 1_501, 2_500} <= set(listed) and not {1_001, 1_500} & set(listed)
    document = parse(html)
    assert document.errors == [] and document.stack == []
    text = re.sub(r"\s+", " ", "".join(document.text))
    assert "500 trades left out here (#1,001 to #1,500)" in text
    assert "first and the last 1,000 of 2,500 trades" in text and "CSV download" in text
    assert "Trades (2,500)" in text
    # Metrics still describe the whole backtest.
    metrics_table = html.split('id="metrics"')[1].split("</table>")[0]
    assert "2,500" in metrics_table.split('data-metric="trades"')[1].split("</tr>")[0]
    # No read of the trades table is unbounded.
    reads = [q["sql"] for q in queries.captured_queries if "backtesttrade" in q["sql"].lower()]
    assert reads and all("LIMIT" in sql.upper() or "COUNT(" in sql.upper() for sql in reads), reads


def test_report_lists_every_trade_up_to_the_cap_without_a_note(alice):
    backtest = backtest_with_trades(alice, reports.REPORT_MAX_TRADES)

    html = reports.backtest_report_html(backtest)

    assert listed_trades(html) == list(range(1, reports.REPORT_MAX_TRADES + 1))
    assert "left out" not in html and 'id="trades-omitted"' not in html


def test_report_filename_is_safe():
    backtest = Backtest(pk=7, strategy_key="sma_cross", timeframe="1h", instrument=Instrument(symbol="BTC/USDT:USDT"))
    assert reports.report_filename(backtest, "html") == "backtest-7-sma_cross-BTC-USDT-USDT-1h.html"


# --- formatting -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "shown"),
    [
        (0.1234, "pct", "12.34%"),
        (-0.05, "pct", "-5.00%"),
        (12345.678, "money", "12,345.68"),
        (1.256, "ratio", "1.26"),
        (42, "int", "42"),
        (17, "bars", "17 bars"),
        (None, "pct", "\u2013"),
        (float("nan"), "ratio", "\u2013"),
        (float("inf"), "money", "\u2013"),
        (True, "ratio", "\u2013"),
    ],
)
def test_format_value(value, kind, shown):
    assert reports.format_value(value, kind) == shown


def test_metric_table_lists_known_metrics_in_order_then_the_rest():
    rows = reports.metric_table({"sharpe": 1.5, "total_return": -0.1, "zeta_score": 3.0})
    keys = [row["key"] for row in rows]
    assert keys[: len(reports.METRICS)] == [m.key for m in reports.METRICS] and keys[-1] == "zeta_score"
    by_key = {row["key"]: row for row in rows}
    assert by_key["total_return"]["tone"] == "neg" and by_key["sharpe"]["tone"] == "pos"
    assert by_key["cagr"]["value"] == "\u2013"


# --- SVG charts -----------------------------------------------------------------------------------


def test_nice_ticks_are_round_and_cover_the_range():
    assert svg.nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = svg.nice_ticks(9_730.0, 14_210.0)
    assert ticks == [10_000.0, 11_000.0, 12_000.0, 13_000.0, 14_000.0]
    assert svg.nice_ticks(5.0, 5.0) == [5.0]


def test_line_chart_breaks_at_missing_values_and_shades_fills():
    markup = svg.line_chart(
        x=[0, 1000, 2000, 3000, 4000],
        lines=[svg.Line("Drawdown", [0.0, -0.1, None, -0.2, 0.0], "#c00", fill=True)],
        y_format=lambda v: f"{v:.0%}",
    )
    assert len(re.findall("<polyline", markup)) == 2 and len(re.findall("<polygon", markup)) == 2
    assert ">Drawdown</text>" in markup
    assert parse(markup).errors == []


def test_line_chart_without_data_says_so():
    assert "no data yet" in svg.line_chart(x=[], lines=[], y_format=str, title="Equity")


def test_histogram_draws_one_bar_per_bin_with_markers_inside_the_range():
    markup = svg.histogram(
        edges=[0.0, 1.0, 2.0, 3.0],
        counts=[5, 10, 2],
        x_format=lambda v: f"{v:.1f}",
        markers=[("inside", 1.5, "#111"), ("outside", 9.0, "#222")],
    )
    heights = [float(h) for h in re.findall(r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', markup)]
    assert len(heights) == 3
    assert heights[1] == max(heights) and heights[0] / heights[1] == pytest.approx(0.5, abs=0.01)
    assert ">inside</text>" in markup and ">outside</text>" not in markup


def test_heat_colour_runs_from_red_through_amber_to_green():
    assert reports.heat_colour(0.0) == "#c0392b"
    assert reports.heat_colour(0.5) == "#f1c40f"
    assert reports.heat_colour(1.0) == "#27ae60"
    assert reports.heat_colour(7.0) == "#27ae60"


def test_heatmap_table_puts_the_highest_y_first_and_colours_by_value():
    grid = {"x": [10, 20], "y": [1.5, 2.5], "z": [[1.0, None], [2.0, 3.0]]}
    table = reports.heatmap_table(grid, x="fast", y="mult")
    assert table["xs"] == ["10", "20"] and [row["y"] for row in table["rows"]] == ["2.5", "1.5"]
    top, bottom = table["rows"]
    assert [c["value"] for c in top["cells"]] == ["2.00", "3.00"]
    assert top["cells"][1]["colour"] == "#27ae60"  # the best
    assert bottom["cells"][0]["colour"] == "#c0392b"  # the worst
    assert bottom["cells"][1]["colour"] == "" and "no feasible trial" in bottom["cells"][1]["title"]
    assert [stop["label"] for stop in table["legend"]] == ["1.00", "1.50", "2.00", "2.50", "3.00"]


def test_monte_carlo_view_shows_what_the_simulation_found():
    rng = np.random.default_rng(3)
    results = monte_carlo(
        trade_returns=rng.normal(0.01, 0.04, 60), cash=10_000, simulations=400, seed=5, loss_threshold=0.1
    )
    view = reports.monte_carlo_view(results)
    assert [row["p"] for row in view["percentiles"]] == list(results["final_equity"]["percentiles"])
    for row in view["percentiles"]:
        expected = results["final_equity"]["percentiles"][row["p"]]
        assert float(row["final_equity"].replace(",", "")) == pytest.approx(expected, abs=0.005)
    labels = dict(view["probabilities"])
    assert labels["Probability of a loss"] == f"{results['probability_of_loss'] * 100:.2f}%"
    assert labels["Probability of losing at least 10.00%"] == f"{results['probability_of_loss_threshold'] * 100:.2f}%"
    bins = len(results["final_equity"]["histogram"]["counts"])
    assert len(re.findall(r"<rect ", str(view["final_histogram"]))) == bins
    fan_lines = re.findall(r"<polyline", str(view["fan"]))
    assert len(fan_lines) == len(results["paths"]["equity"]) + 5  # sample paths + 5 percentile bands
    assert math.isfinite(float(view["original"]["final_equity"].replace(",", "")))


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (35327.19, "35,327.19"),
        (0.282785, "0.282785"),
        (0.00001234, "0.00001234"),
        (1_234_567.891, "1,234,567.89"),
        (2.5, "2.50"),
        (-12.0, "-12.00"),
        (None, "\u2013"),
    ],
)
def test_format_price_keeps_the_significant_digits(value, shown):
    assert reports.format_price(value) == shown


@pytest.mark.parametrize(
    ("number", "text"), [(1, "1st"), (2, "2nd"), (3, "3rd"), (5, "5th"), (11, "11th"), (21, "21st"), (99, "99th")]
)
def test_ordinal(number, text):
    assert reports.ordinal(number) == text
