"""Portal pages of backtests: the list, the form (errors at the input the service names, nothing
typed lost), the result page, the downloads, the optimisation / walk-forward / Monte Carlo
pages, and outsiders getting a 404 everywhere.

Jobs are created and run with the real services on real candles (the newest bars of
../shared/data/ohlcv/BTC-USDT_1h), the way the worker runs them: the task's service called in
the test with the on-commit callbacks executed.
"""

import re
from collections.abc import Callable
from html import unescape
from typing import Any

import pandas as pd
import pytest
from django.test import Client

from apps.backtests import services
from apps.backtests.engine import EngineSettings, InvalidSettingsError
from apps.backtests.models import Backtest, JobStatus, MonteCarlo, Optimisation, WalkForward
from apps.common.errors import ApplicationError
from apps.marketdata.models import Instrument
from apps.marketdata.services import instrument_get_or_create
from apps.marketdata.storage import candles_write
from apps.strategies import services as strategy_services
from apps.strategies.errors import InvalidParamsError
from apps.strategies.params import params_schema
from apps.strategies.registry import get_strategy, strategy_class, strategy_classes
from tests.backtests import platform_support
from tests.backtests.platform_support import Sent
from tests.marketdata.ohlcv import load_candles

# Fixtures shared with the platform's tests: task sends recorded, Optuna files in a temp folder.
sent = platform_support.sent
optuna_dir = platform_support.optuna_dir

pytestmark = pytest.mark.django_db

BARS = 1500
SMA = {"fast": 5, "slow": 20}
NUMBER = re.compile(r"-?[\d,]+(?:\.\d+)?")


# --- helpers --------------------------------------------------------------------------------------


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def field_block(html: str, name: str) -> str:
    """The markup of the form field block whose data-field is ``name``."""
    match = re.search(rf'<div class="field[^"]*" data-field="{re.escape(name)}"', html)
    assert match, f"no field block for {name}"
    rest = html[match.start() :]
    return rest[: rest.index("</div>") + 6]


def input_value(block: str) -> str | None:
    match = re.search(r'value="([^"]*)"', block)
    return unescape(match.group(1)) if match else None


def number_in(text: str) -> float:
    """The first number in a formatted cell (12,345.67 or -3.21%)."""
    match = NUMBER.search(text)
    assert match, text
    return float(match.group(0).replace(",", ""))


def metric_cell(html: str, key: str, column: int = 0) -> str:
    row = html.split(f'data-metric="{key}"')[1].split("</tr>")[0]
    cells = re.findall(r'<td class="num[^"]*">([^<]*)</td>', row)
    return unescape(cells[column])


def drive(sent: Sent, capture: Any) -> None:
    """Run every task the services queued (and those they queue in turn), as a worker would."""
    done: set[tuple[str, tuple[Any, ...]]] = set()
    runners: dict[str, Callable[..., None]] = {
        "backtest_run": lambda pk: services.backtest_run(backtest_id=pk),
        "optimisation_run": lambda pk: services.optimisation_run(optimisation_id=pk),
        "optimisation_chunk_run": lambda pk, chunk: services.optimisation_chunk_run(optimisation_id=pk, chunk=chunk),
        "walk_forward_run": lambda pk: services.walk_forward_run(walk_forward_id=pk),
        "monte_carlo_run": lambda pk: services.monte_carlo_run(monte_carlo_id=pk),
    }
    while True:
        pending = [(name, args) for name, calls in sent.calls.items() for args in calls if (name, args) not in done]
        if not pending:
            return
        for name, args in pending:
            done.add((name, args))
            with capture(execute=True):
                runners[name](*args)


def form_data(instrument: Instrument, **overrides: Any) -> dict[str, Any]:
    """A complete POST of the backtest form: SMA cross 5/20 with the engine's defaults."""
    defaults = EngineSettings.from_dict({}).as_dict()
    data: dict[str, Any] = {
        "strategy": "sma_cross",
        "param_fast": SMA["fast"],
        "param_slow": SMA["slow"],
        "instrument": instrument.pk,
        "timeframe": "1h",
        "cash": defaults["cash"],
        "fill": defaults["fill"],
        "entry": defaults["entry"],
        "limit_offset": "0",
        "allow_short": "on",
        "fee": "0.1",
        "fee_fixed": "0",
        "slippage": "none",
        "slippage_bps": "0",
        "impact": defaults["costs"]["impact"],
        "sizing_mode": "all_equity",
        "fraction": "100",
        "amount": defaults["sizing"]["amount"],
        "risk": "1",
        "atr_period": defaults["sizing"]["atr_period"],
        "atr_multiple": defaults["sizing"]["atr_multiple"],
        "kelly_cap": "25",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def market(db: Any) -> Instrument:
    """BTC/USDT with its newest real 1h candles."""
    instrument = instrument_get_or_create(venue="binance", symbol="BTC/USDT", tick_size="0.01")
    candles_write(
        instrument=instrument, timeframe="1h", frame=load_candles("BTC-USDT_1h").iloc[-BARS:], source="import"
    )
    return instrument


def create_backtest(owner: Any, instrument: Instrument, capture: Any, **overrides: Any) -> Backtest:
    spec: dict[str, Any] = {
        "strategy_key": "sma_cross",
        "params": dict(SMA),
        "rule_set_id": None,
        "instrument_id": instrument.pk,
        "timeframe": "1h",
        "start_at": None,
        "end_at": None,
        "settings": {"cash": 10_000, "costs": {"fee": 0.001}},
        **overrides,
    }
    with capture(execute=True):
        return services.backtest_create(owner=owner, **spec)


@pytest.fixture
def finished(alice: Any, market: Instrument, sent: Sent, django_capture_on_commit_callbacks: Any) -> Backtest:
    backtest = create_backtest(alice, market, django_capture_on_commit_callbacks)
    drive(sent, django_capture_on_commit_callbacks)
    backtest.refresh_from_db()
    assert backtest.status == JobStatus.SUCCEEDED, backtest.error
    return backtest


# --- access ---------------------------------------------------------------------------------------


def test_backtest_pages_need_a_login(web_client, finished):
    for url in (
        "/backtests/",
        "/backtests/new/",
        f"/backtests/{finished.pk}/",
        f"/backtests/{finished.pk}/report/",
        f"/backtests/{finished.pk}/trades.csv",
        "/backtests/optimisations/new/",
    ):
        response = web_client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/")


def test_another_users_backtest_is_404_everywhere_and_unchanged(finished, mallory):
    client = client_for(mallory)
    pk = finished.pk
    for url in (
        f"/backtests/{pk}/",
        f"/backtests/{pk}/status/",
        f"/backtests/{pk}/report/",
        f"/backtests/{pk}/trades.csv",
        f"/backtests/{pk}/monte-carlo/new/",
        f"/backtests/new/?from={pk}",
        f"/backtests/optimisations/new/?from={pk}",
    ):
        assert client.get(url).status_code == 404, url
    for url in (f"/backtests/{pk}/rerun/", f"/backtests/{pk}/cancel/", f"/backtests/{pk}/monte-carlo/new/"):
        assert (
            client.post(url, {"method": "resample", "simulations": 10, "noise": 0, "loss_threshold": 20}).status_code
            == 404
        )
    assert Backtest.objects.count() == 1 and not MonteCarlo.objects.exists()
    html = client.get("/backtests/").content.decode()
    assert f'data-backtest-id="{pk}"' not in html and "No backtests yet" in html


# --- the list -------------------------------------------------------------------------------------


def test_list_shows_my_backtests_with_their_figures(alice, finished):
    html = client_for(alice).get("/backtests/").content.decode()
    row = html.split(f'data-backtest-id="{finished.pk}"')[1].split("</tr>")[0]
    assert "Succeeded" in row and "sma_cross" in row and "BTC/USDT" in row and ">1h<" in row
    cells = [unescape(c) for c in re.findall(r'<td class="num[^"]*">([^<]*)</td>', row)]
    total_return, sharpe, max_drawdown = (number_in(c) for c in cells)
    assert total_return == pytest.approx(finished.metrics["total_return"] * 100, abs=0.005)
    assert sharpe == pytest.approx(finished.metrics["sharpe"], abs=0.005)
    assert max_drawdown == pytest.approx(finished.metrics["max_drawdown"] * 100, abs=0.005)
    for section in ("optimisations", "walk-forwards", "monte-carlo"):
        assert f'id="{section}"' in html


def test_list_says_how_to_start(alice):
    html = client_for(alice).get("/backtests/").content.decode()
    assert "No backtests yet" in html and 'href="/strategies/"' in html


# --- the form -------------------------------------------------------------------------------------


def test_form_offers_every_strategy_and_my_rule_sets_with_params_from_the_schema(alice, market):
    rule_set = strategy_services.rule_set_create(
        owner=alice, name="Dip", rules=strategy_services.rules_normalise(conditions={"enter_long": "rsi(14) < 30"})
    )
    html = client_for(alice).get("/backtests/new/?strategy=ema_cross").content.decode()

    for cls in strategy_classes():
        assert f'<option value="{cls.key}"' in html
    assert f'<option value="rules:{rule_set.pk}"' in html
    assert '<option value="ema_cross" selected>' in html
    schema = params_schema(strategy_class("ema_cross").Params)
    for name, prop in schema["properties"].items():
        block = field_block(html, f"param_{name}")
        if prop["type"] == "boolean":
            assert 'type="checkbox"' in block
            continue
        assert input_value(block) == str(prop["default"])
        assert f'min="{prop["minimum"]}"' in block and f'max="{prop["maximum"]}"' in block
    # The script's catalogue carries every strategy's schema (no round trip to switch).
    assert 'id="form-config"' in html and "js/backtest_form.js" in html
    # The instrument with candles is preselected on its stored timeframe.
    assert f'<option value="{market.pk}" selected>' in html


@pytest.mark.parametrize("key", sorted(cls.key for cls in strategy_classes()))
def test_form_and_search_tables_render_for_every_strategy(alice, market, key):
    client = client_for(alice)
    schema = params_schema(strategy_class(key).Params)["properties"]
    for url in ("/backtests/new/", "/backtests/optimisations/new/", "/backtests/walk-forwards/new/"):
        response = client.get(f"{url}?strategy={key}")
        html = response.content.decode()
        assert response.status_code == 200, url
        for name in schema:
            assert f'name="param_{name}"' in html, (url, name)


def test_submitting_the_form_creates_the_backtest_with_what_was_typed(alice, market, sent):
    response = client_for(alice).post(
        "/backtests/new/",
        form_data(
            market, fee="0.2", maker_fee="0.05", stop_loss="2.5", take_profit="7", time_exit_bars="48", name="Mine"
        ),
    )
    backtest = Backtest.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == f"/backtests/{backtest.pk}/"
    assert backtest.name == "Mine"
    assert backtest.params["fast"] == SMA["fast"] and backtest.params["slow"] == SMA["slow"]
    settings = backtest.settings
    assert settings["costs"]["fee"] == 0.002
    assert settings["costs"]["maker_fee"] == 0.0005
    assert settings["exits"]["stop_loss"] == 0.025 and settings["exits"]["take_profit"] == 0.07
    assert settings["exits"]["time_exit_bars"] == 48 and settings["exits"]["trailing_stop"] is None
    assert settings["allow_short"] is True


def test_a_rule_strategy_is_backtested_from_the_form(alice, market, sent):
    rules = strategy_services.rules_normalise(conditions={"enter_long": "rsi(14) < 30", "exit_long": "rsi(14) > 70"})
    rule_set = strategy_services.rule_set_create(owner=alice, name="Dip", rules=rules)
    data = form_data(market, strategy=f"rules:{rule_set.pk}")
    data.pop("param_fast"), data.pop("param_slow")
    response = client_for(alice).post("/backtests/new/", data)
    backtest = Backtest.objects.get(owner=alice)
    assert response.status_code == 302
    assert backtest.strategy_key == "rules" and backtest.rules == rules and backtest.rule_set == rule_set


def test_a_parameter_out_of_bounds_is_shown_at_its_input(alice, market):
    low = params_schema(strategy_class("sma_cross").Params)["properties"]["fast"]["minimum"]
    with pytest.raises(InvalidParamsError) as caught:
        get_strategy("sma_cross", fast=low - 1, slow=20)

    response = client_for(alice).post("/backtests/new/", form_data(market, param_fast=low - 1, fee="0.37"))
    html = response.content.decode()

    assert response.status_code == 200 and not Backtest.objects.exists()
    assert caught.value.field == "params.fast"
    block = field_block(html, "param_fast")
    assert "has-error" in block and caught.value.message in unescape(block)
    assert input_value(block) == str(low - 1)
    # Nothing else is marked, and what was typed elsewhere is kept.
    assert "has-error" not in field_block(html, "param_slow")
    assert input_value(field_block(html, "fee")) == "0.37"
    assert input_value(field_block(html, "param_slow")) == "20"


def test_params_that_disagree_are_shown_at_the_field_the_strategy_names(alice, market):
    with pytest.raises(InvalidParamsError) as caught:
        get_strategy("sma_cross", fast=30, slow=20)
    name = caught.value.field.split(".", 1)[1]

    html = client_for(alice).post("/backtests/new/", form_data(market, param_fast=30)).content.decode()

    block = field_block(html, f"param_{name}")
    assert "has-error" in block and caught.value.message in unescape(block)


def test_a_bad_engine_setting_is_shown_at_its_input(alice, market):
    with pytest.raises(InvalidSettingsError) as caught:
        EngineSettings.from_dict({"costs": {"fee": 0.6}})
    path, messages = next(iter(caught.value.extra["fields"].items()))
    assert path == "settings.costs.fee"

    html = client_for(alice).post("/backtests/new/", form_data(market, fee="60", stop_loss="3")).content.decode()

    block = field_block(html, "fee")
    assert "has-error" in block and messages[0] in unescape(block)
    assert input_value(block) == "60"
    assert input_value(field_block(html, "stop_loss")) == "3"
    assert not Backtest.objects.exists()


def test_a_range_without_candles_is_shown_at_the_start(alice, market):
    html = (
        client_for(alice)
        .post("/backtests/new/", form_data(market, start_at="2030-01-01T00:00", end_at="2030-02-01T00:00"))
        .content.decode()
    )
    block = field_block(html, "start_at")
    assert "has-error" in block and "No 1h candles" in unescape(block)
    assert input_value(block) == "2030-01-01T00:00"


def test_a_timeframe_not_stored_is_shown_at_the_timeframe(alice, market):
    html = client_for(alice).post("/backtests/new/", form_data(market, timeframe="4h")).content.decode()
    assert "has-error" in field_block(html, "timeframe")


def test_edit_and_rerun_fills_the_form_from_a_backtest(alice, finished):
    html = client_for(alice).get(f"/backtests/new/?from={finished.pk}").content.decode()
    assert input_value(field_block(html, "param_fast")) == str(finished.params["fast"])
    assert input_value(field_block(html, "param_slow")) == str(finished.params["slow"])
    # 0.001 is shown as a 0.1 % fee
    assert input_value(field_block(html, "fee")) == "0.1"
    assert float(input_value(field_block(html, "cash")) or "nan") == finished.settings["cash"]


# --- the result page ------------------------------------------------------------------------------


def test_a_queued_backtest_shows_a_live_progress_bar(alice, market, sent, django_capture_on_commit_callbacks):
    backtest = create_backtest(alice, market, django_capture_on_commit_callbacks)
    html = client_for(alice).get(f"/backtests/{backtest.pk}/").content.decode()
    assert 'id="job-progress"' in html and 'id="job-config"' in html
    assert "js/live.js" in html and "js/backtest_live.js" in html
    assert f'action="/backtests/{backtest.pk}/cancel/"' in html
    assert 'id="metrics"' not in html

    status = client_for(alice).get(f"/backtests/{backtest.pk}/status/").json()
    assert status == {
        "kind": "backtest",
        "id": backtest.pk,
        "status": "queued",
        "progress": 0.0,
        "error": "",
        "finished": False,
    }


def test_results_show_every_metric_beside_buy_and_hold(alice, finished):
    html = client_for(alice).get(f"/backtests/{finished.pk}/").content.decode()
    metrics = finished.metrics
    assert number_in(metric_cell(html, "total_return")) == pytest.approx(metrics["total_return"] * 100, abs=0.005)
    assert metric_cell(html, "total_return").endswith("%")
    assert number_in(metric_cell(html, "final_equity")) == pytest.approx(metrics["final_equity"], abs=0.005)
    assert number_in(metric_cell(html, "sharpe")) == pytest.approx(metrics["sharpe"], abs=0.005)
    assert number_in(metric_cell(html, "trades")) == metrics["trades"]
    # Buy and hold: the first close to the last, from the candles themselves.
    candles = load_candles("BTC-USDT_1h").iloc[-BARS:]
    bh = candles["close"].iloc[-1] / candles["close"].iloc[0] - 1
    assert number_in(metric_cell(html, "total_return", 1)) == pytest.approx(bh * 100, abs=0.005)
    for key in metrics:
        assert f'data-metric="{key}"' in html
    # Charts: curves and trade markers for the script, candles from the candles API.
    assert 'id="backtest-chart"' in html and "js/backtest_charts.js" in html
    assert f"/api/v1/instruments/{finished.instrument_id}/candles/" in html
    assert "lightweight-charts.standalone.production.js" in html
    for button in ("download-report", "download-csv", "rerun", "optimise", "walk-forward", "monte-carlo"):
        assert f'id="{button}"' in html


def test_trades_are_paginated(alice, finished):
    count = finished.trades.count()
    assert count > 50, "the fixture needs more than one page of trades"
    client = client_for(alice)
    first = client.get(f"/backtests/{finished.pk}/").content.decode()
    last_page = (count - 1) // 50 + 1
    last = client.get(f"/backtests/{finished.pk}/?page={last_page}").content.decode()
    assert first.count('<tr data-trade="') == 50
    assert last.count('<tr data-trade="') == count - 50 * (last_page - 1)
    assert f'<tr data-trade="{count}">' in last and '<tr data-trade="1">' not in last


def test_a_failed_backtest_shows_its_error_and_a_way_back_to_the_form(
    alice, market, sent, django_capture_on_commit_callbacks
):
    backtest = create_backtest(
        alice, market, django_capture_on_commit_callbacks, strategy_key="test_exploding", params={}
    )
    drive(sent, django_capture_on_commit_callbacks)
    backtest.refresh_from_db()
    assert backtest.status == JobStatus.FAILED

    html = client_for(alice).get(f"/backtests/{backtest.pk}/").content.decode()
    error = html.split('id="job-error"')[1].split("</section>")[0]
    assert "division by zero in my indicator" in unescape(error)
    assert f'href="/backtests/new/?from={backtest.pk}"' in error


def test_a_peeking_strategy_carries_the_look_ahead_warning(alice, market, sent, django_capture_on_commit_callbacks):
    backtest = create_backtest(
        alice, market, django_capture_on_commit_callbacks, strategy_key="test_peeking", params={}
    )
    drive(sent, django_capture_on_commit_callbacks)
    backtest.refresh_from_db()
    assert backtest.is_lookahead_biased

    html = client_for(alice).get(f"/backtests/{backtest.pk}/").content.decode()
    assert 'id="lookahead-warning"' in html
    assert 'id="lookahead-warning"' not in client_for(alice).get("/backtests/").content.decode()
    assert "look-ahead" in client_for(alice).get("/backtests/").content.decode()


def test_cancel_and_rerun(alice, market, finished, sent, django_capture_on_commit_callbacks):
    client = client_for(alice)
    queued = create_backtest(alice, market, django_capture_on_commit_callbacks)
    assert client.post(f"/backtests/{queued.pk}/cancel/").status_code == 302
    queued.refresh_from_db()
    assert queued.status == JobStatus.CANCELLED

    response = client.post(f"/backtests/{finished.pk}/rerun/")
    rerun = Backtest.objects.get(rerun_of=finished)
    assert response["Location"] == f"/backtests/{rerun.pk}/"
    assert rerun.params == finished.params and rerun.settings == finished.settings


# --- downloads ------------------------------------------------------------------------------------


def test_report_downloads_as_one_html_file(alice, finished):
    response = client_for(alice).get(f"/backtests/{finished.pk}/report/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert response["Content-Disposition"] == (
        f'attachment; filename="backtest-{finished.pk}-sma_cross-BTC-USDT-1h.html"'
    )
    html = response.content.decode()
    assert html.count('<tr><td class="num">') == finished.trades.count()


def test_csv_has_a_header_and_one_row_per_stored_trade(alice, finished):
    import csv
    import io
    from datetime import datetime

    response = client_for(alice).get(f"/backtests/{finished.pk}/trades.csv")
    assert response["Content-Disposition"] == f'attachment; filename="backtest-{finished.pk}-sma_cross-BTC-USDT-1h.csv"'
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    trades = list(finished.trades.order_by("number"))
    assert len(rows) == len(trades) > 0
    for row, trade in zip(rows, trades, strict=True):
        assert int(row["number"]) == trade.number and row["side"] == trade.side
        assert datetime.fromisoformat(row["entry_at"]) == trade.entry_at
        assert datetime.fromisoformat(row["exit_at"]) == trade.exit_at
        for column in ("entry_price", "exit_price", "size", "fees", "pnl", "return_pct"):
            assert float(row[column]) == getattr(trade, column), column
        assert int(row["bars_held"]) == trade.bars_held and row["exit_reason"] == trade.exit_reason


def test_downloads_of_an_unfinished_backtest_are_404(alice, market, sent, django_capture_on_commit_callbacks):
    backtest = create_backtest(alice, market, django_capture_on_commit_callbacks)
    client = client_for(alice)
    assert client.get(f"/backtests/{backtest.pk}/report/").status_code == 404
    assert client.get(f"/backtests/{backtest.pk}/trades.csv").status_code == 404


# --- optimisation ---------------------------------------------------------------------------------


def optimisation_form(instrument: Instrument, **overrides: Any) -> dict[str, Any]:
    data = form_data(instrument)
    data.update(
        {
            "search_fast": "on",
            "low_fast": "4",
            "high_fast": "8",
            "step_fast": "2",
            "search_slow": "on",
            "low_slow": "20",
            "high_slow": "40",
            "step_slow": "10",
            "method": "grid",
            "objective": "sharpe",
            "min_trades": "1",
            "n_trials": "100",
        }
    )
    data.update(overrides)
    return data


def test_optimisation_form_starts_from_a_backtest_with_the_params_bounds(alice, finished):
    html = client_for(alice).get(f"/backtests/optimisations/new/?from={finished.pk}").content.decode()
    schema = params_schema(strategy_class("sma_cross").Params)["properties"]
    for name in ("fast", "slow"):
        assert float(input_value(field_block(html, f"low_{name}")) or "nan") == schema[name]["minimum"]
        assert float(input_value(field_block(html, f"high_{name}")) or "nan") == schema[name]["maximum"]
        assert input_value(field_block(html, f"param_{name}")) == str(finished.params[name])
        assert "checked" in field_block(html, f"search_{name}")


def test_optimisation_runs_and_shows_best_params_trials_and_a_heat_map(
    alice, market, sent, optuna_dir, django_capture_on_commit_callbacks
):
    client = client_for(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/backtests/optimisations/new/", optimisation_form(market))
    optimisation = Optimisation.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == f"/backtests/optimisations/{optimisation.pk}/"
    assert optimisation.space == {"fast": {"low": 4, "high": 8, "step": 2}, "slow": {"low": 20, "high": 40, "step": 10}}
    drive(sent, django_capture_on_commit_callbacks)
    optimisation.refresh_from_db()
    assert optimisation.status == JobStatus.SUCCEEDED, optimisation.error
    trials = list(optimisation.trials.all())
    assert len(trials) == 9

    html = client.get(f"/backtests/optimisations/{optimisation.pk}/").content.decode()

    best = max((t for t in trials if t.value is not None), key=lambda t: (t.value, -t.number))
    for name, value in best.params.items():
        if name in ("fast", "slow"):
            assert f'<tr data-param="{name}"><th>{name}</th><td class="num">{value}</td>' in html
    # Trials best first.
    numbers = [int(n) for n in re.findall(r'<tr data-trial="(\d+)"', html)]
    ranked = sorted(trials, key=lambda t: (t.value is None, -(t.value or 0), t.number))
    assert numbers == [t.number for t in ranked]
    # The heat map: 3 fast values across, 3 slow values down, the best cell at the green end.
    heat = html.split('id="heatmap"')[1].split("</table>")[0]
    assert 'data-x="fast" data-y="slow"' in html
    assert len(re.findall(r"<td[^>]*>", heat)) == 9
    assert "background:#27ae60" in heat  # the best value's colour
    assert 'id="heatmap-legend"' in html
    # Sorted the other way on request.
    worst_first = client.get(f"/backtests/optimisations/{optimisation.pk}/?sort=value").content.decode()
    assert (
        next(int(n) for n in re.findall(r'<tr data-trial="(\d+)"', worst_first))
        == min((t for t in trials if t.value is not None), key=lambda t: (t.value, t.number)).number
    )

    # Backtest the best params.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/backtests/optimisations/{optimisation.pk}/backtest/")
    backtest = Backtest.objects.get(owner=alice)
    assert response["Location"] == f"/backtests/{backtest.pk}/"
    assert backtest.params["fast"] == best.params["fast"] and backtest.params["slow"] == best.params["slow"]


def test_a_bad_search_range_is_shown_at_its_input(alice, market):
    response = client_for(alice).post(
        "/backtests/optimisations/new/", optimisation_form(market, low_fast="9", high_fast="4")
    )
    html = response.content.decode()
    assert response.status_code == 200 and not Optimisation.objects.exists()
    assert "has-error" in field_block(html, "high_fast")
    assert input_value(field_block(html, "low_fast")) == "9"


def test_optimisation_pages_are_404_for_an_outsider(alice, mallory, market, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client_for(alice).post("/backtests/optimisations/new/", optimisation_form(market))
    optimisation = Optimisation.objects.get()
    client = client_for(mallory)
    for url in ("", "status/"):
        assert client.get(f"/backtests/optimisations/{optimisation.pk}/{url}").status_code == 404
    for url in ("cancel/", "backtest/"):
        assert client.post(f"/backtests/optimisations/{optimisation.pk}/{url}").status_code == 404
    optimisation.refresh_from_db()
    assert optimisation.status == JobStatus.QUEUED


# --- walk-forward ---------------------------------------------------------------------------------


def test_walk_forward_runs_and_shows_its_windows_and_stitched_equity(
    alice, mallory, market, sent, django_capture_on_commit_callbacks
):
    data = optimisation_form(market, mode="rolling", windows_count="3", train_ratio="70")
    client = client_for(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/backtests/walk-forwards/new/", data)
    walk_forward = WalkForward.objects.get(owner=alice)
    assert response["Location"] == f"/backtests/walk-forwards/{walk_forward.pk}/"
    assert walk_forward.train_ratio == 0.7 and walk_forward.windows_count == 3

    drive(sent, django_capture_on_commit_callbacks)
    walk_forward.refresh_from_db()
    assert walk_forward.status == JobStatus.SUCCEEDED, walk_forward.error

    html = client.get(f"/backtests/walk-forwards/{walk_forward.pk}/").content.decode()
    assert html.count('<tr data-window="') == len(walk_forward.windows) == 3
    assert 'id="equity-chart"' in html and "js/backtest_charts.js" in html
    assert 'id="degradation"' in html
    assert client_for(mallory).get(f"/backtests/walk-forwards/{walk_forward.pk}/").status_code == 404


def test_walk_forward_with_too_many_windows_says_so_at_the_windows(alice, market):
    # 100 bars cannot hold 8 windows of at least 10 test bars each.
    last = load_candles("BTC-USDT_1h").index[-1]
    start = (last - pd.Timedelta(hours=99)).strftime("%Y-%m-%dT%H:%M")
    data = optimisation_form(market, mode="rolling", windows_count="8", train_ratio="70", start_at=start)
    html = client_for(alice).post("/backtests/walk-forwards/new/", data).content.decode()
    assert "has-error" in field_block(html, "windows_count")
    assert not WalkForward.objects.exists()


# --- Monte Carlo ----------------------------------------------------------------------------------


def test_monte_carlo_runs_from_a_backtest_and_shows_its_distributions(
    alice, mallory, finished, sent, django_capture_on_commit_callbacks
):
    client = client_for(alice)
    assert 'name="simulations"' in client.get(f"/backtests/{finished.pk}/monte-carlo/new/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/backtests/{finished.pk}/monte-carlo/new/",
            {"method": "reshuffle", "simulations": "500", "noise": "0.5", "seed": "7", "loss_threshold": "10"},
        )
    monte_carlo = MonteCarlo.objects.get(owner=alice)
    assert response["Location"] == f"/backtests/monte-carlo/{monte_carlo.pk}/"
    assert (monte_carlo.noise, monte_carlo.loss_threshold, monte_carlo.seed) == (0.005, 0.1, 7)

    drive(sent, django_capture_on_commit_callbacks)
    monte_carlo.refresh_from_db()
    assert monte_carlo.status == JobStatus.SUCCEEDED, monte_carlo.error

    html = client.get(f"/backtests/monte-carlo/{monte_carlo.pk}/").content.decode()
    percentiles = monte_carlo.results["final_equity"]["percentiles"]
    for p, value in percentiles.items():
        row = html.split(f'data-percentile="{p}"')[1].split("</tr>")[0]
        cells = re.findall(r'<td class="num[^"]*">([^<]*)</td>', row)
        assert number_in(cells[1]) == pytest.approx(value, abs=0.005)
    for section in ("final-equity-histogram", "drawdown-histogram", "fan-chart"):
        assert "<svg" in html.split(f'id="{section}"')[1].split("</section>")[0]
    probability = monte_carlo.results["probability_of_loss"]
    assert f"{probability * 100:.2f}%" in html
    assert client_for(mallory).get(f"/backtests/monte-carlo/{monte_carlo.pk}/").status_code == 404


def test_monte_carlo_form_errors_are_shown_at_their_input(alice, finished):
    with pytest.raises(ApplicationError):
        services.monte_carlo_create(
            owner=alice, backtest=finished, method="resample", simulations=0, noise=0.0, seed=None, loss_threshold=0.2
        )
    html = (
        client_for(alice)
        .post(
            f"/backtests/{finished.pk}/monte-carlo/new/",
            {"method": "resample", "simulations": "0", "noise": "0", "loss_threshold": "20"},
        )
        .content.decode()
    )
    assert "has-error" in field_block(html, "simulations")
    assert not MonteCarlo.objects.exists()


@pytest.mark.django_db(transaction=True)
async def test_csv_streams_asynchronously_under_asgi(alice, market, sent, django_capture_on_commit_callbacks):
    """Under the ASGI server the CSV is an async stream (a sync one would be buffered whole),
    with the same lines as the sync one."""
    from asgiref.sync import sync_to_async
    from django.db import connections
    from django.test import AsyncClient

    from apps.backtests import reports

    def prepare() -> tuple[Backtest, list[str]]:
        backtest = create_backtest(alice, market, django_capture_on_commit_callbacks)
        drive(sent, django_capture_on_commit_callbacks)
        backtest.refresh_from_db()
        return backtest, list(reports.backtest_trades_csv(backtest))

    try:
        backtest, expected = await sync_to_async(prepare)()
        client = AsyncClient()
        await client.aforce_login(alice)
        response = await client.get(f"/backtests/{backtest.pk}/trades.csv")
        assert response.status_code == 200 and response.is_async
        body = b"".join([chunk async for chunk in response.streaming_content]).decode()
    finally:
        # Django's sync thread opened its own connection: close it so the test database can go.
        await sync_to_async(connections.close_all)()
    assert body == "".join(expected) and body.count("\n") == backtest.metrics["trades"] + 1


def test_pages_are_well_formed(alice, finished, sent, optuna_dir, django_capture_on_commit_callbacks):
    """Every element closes in order on each page (a template slip shows up here)."""
    from tests.backtests.test_reports import parse

    client = client_for(alice)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/backtests/optimisations/new/", optimisation_form(finished.instrument))
        client.post(
            f"/backtests/{finished.pk}/monte-carlo/new/",
            {"method": "resample", "simulations": "500", "noise": "0", "loss_threshold": "20"},
        )
    drive(sent, django_capture_on_commit_callbacks)
    optimisation, monte_carlo = Optimisation.objects.get(), MonteCarlo.objects.get()
    for url in (
        "/backtests/",
        "/backtests/new/",
        f"/backtests/new/?from={finished.pk}",
        f"/backtests/{finished.pk}/",
        "/backtests/optimisations/new/?strategy=sma_cross",
        "/backtests/walk-forwards/new/?strategy=sma_cross",
        f"/backtests/optimisations/{optimisation.pk}/",
        f"/backtests/monte-carlo/{monte_carlo.pk}/",
        f"/backtests/{finished.pk}/monte-carlo/new/",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        document = parse(response.content.decode())
        assert document.errors == [] and document.stack == [], (url, document.errors[:3], document.stack)
