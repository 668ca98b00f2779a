"""`manage.py backtest`: JSON and table output, candle files, stored candles, rule sets, bad input."""

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.backtests.engine import run_backtest
from apps.marketdata import services, storage
from apps.strategies.registry import get_strategy
from apps.strategies.rules import compile_rules
from tests.marketdata.ohlcv import OHLCV_DIR, load_candles

ROOT = Path(__file__).resolve().parents[2]
BTC_1H = OHLCV_DIR / "BTC-USDT_1h.csv.gz"
RSI_RULES = {
    "version": 1,
    "enter_long": {"left": {"indicator": "rsi", "args": [14]}, "op": "<", "right": {"value": 30}},
    "exit_long": {"left": {"indicator": "rsi", "args": [14]}, "op": ">", "right": {"value": 70}},
    "enter_short": None,
    "exit_short": None,
}


def run(*args: str) -> str:
    out = StringIO()
    call_command("backtest", *args, stdout=out)
    return out.getvalue()


def test_json_report_matches_the_engine():
    # given the example command on real hourly candles
    candles = load_candles("BTC-USDT_1h")
    output = run(
        "--strategy", "sma_cross", "--params", '{"fast": 10, "slow": 30}', "--csv", str(BTC_1H),
        "--fee", "0.001", "--cash", "10000", "--fill", "next_open", "--json",
    )  # fmt: skip
    # then one JSON object with every metric, equal to a direct engine run
    report = json.loads(output)
    expected = run_backtest(get_strategy("sma_cross", fast=10, slow=30), candles, timeframe="1h").metrics
    for key in (
        "final_equity",
        "total_return",
        "trades",
        "sharpe",
        "sortino",
        "max_drawdown",
        "win_rate",
        "profit_factor",
    ):
        assert key in report
    assert {k: report[k] for k in expected} == expected
    assert report["lookahead_biased"] is False
    assert report["bars"] == len(candles)
    assert report["start"].startswith("2020-12-01")


def test_table_report_is_readable():
    output = run("--strategy", "ema_cross", "--csv", str(BTC_1H), "--start", "2021-03-01", "--end", "2021-04-01")
    march = len(load_candles("BTC-USDT_1h").loc["2021-03-01":"2021-03-31"])
    assert "EMA cross" in output and f"{march} bars" in output
    assert "sharpe" in output and "max_drawdown" in output and "lookahead_biased" in output
    assert "%" in output


def test_range_and_engine_settings_apply():
    candles = load_candles("BTC-USDT_1h").loc["2021-02-01":"2021-04-30"]
    settings = {"exits": {"stop_loss": 0.02}, "sizing": {"mode": "fixed_fraction", "fraction": 0.5}}
    report = json.loads(
        run(
            "--strategy",
            "sma_cross",
            "--csv",
            str(BTC_1H),
            "--start",
            "2021-02-01",
            "--end",
            "2021-05-01",
            "--engine-settings",
            json.dumps(settings),
            "--cash",
            "5000",
            "--json",
        )
    )
    expected = run_backtest(get_strategy("sma_cross"), candles, settings={**settings, "cash": 5000, "timeframe": "1h"})
    assert report["final_equity"] == expected.metrics["final_equity"]
    assert report["trades"] == expected.metrics["trades"] > 0


def test_rule_set_from_a_file(tmp_path):
    rules = tmp_path / "rsi.json"
    rules.write_text(json.dumps(RSI_RULES))
    report = json.loads(run("--rules", str(rules), "--csv", str(BTC_1H), "--json"))
    candles = load_candles("BTC-USDT_1h")
    expected = run_backtest(compile_rules(RSI_RULES), candles, timeframe="1h").metrics
    assert report["trades"] == expected["trades"] > 0
    assert report["final_equity"] == expected["final_equity"]


@pytest.mark.django_db
def test_stored_candles_by_instrument():
    # given an instrument with a lot size and its hourly candles in the store
    candles = load_candles("ETH-USDT_1h").loc["2021-01-01":"2021-02-28"]
    instrument = services.instrument_get_or_create(venue="binance", symbol="ETH/USDT", lot_size="0.01")
    storage.candles_write(instrument=instrument, timeframe="1h", frame=candles)
    # when
    report = json.loads(
        run(
            "--strategy",
            "sma_cross",
            "--instrument",
            str(instrument.id),
            "--timeframe",
            "1h",
            "--start",
            "2021-01-10",
            "--end",
            "2021-02-10",
            "--json",
        )
    )
    # then the range was applied and the lot size respected
    window = candles.loc["2021-01-10":"2021-02-09"]
    expected = run_backtest(get_strategy("sma_cross"), window, timeframe="1h", instrument={"lot_size": 0.01}).metrics
    assert report["bars"] == len(window)
    assert report["final_equity"] == pytest.approx(expected["final_equity"], rel=1e-12)
    assert report["trades"] == expected["trades"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "no_such", "--csv", str(BTC_1H)], "no_such"),
        (["--strategy", "sma_cross", "--params", '{"fast": 900}', "--csv", str(BTC_1H)], "params.fast"),
        (["--strategy", "sma_cross", "--params", "{fast: 1}", "--csv", str(BTC_1H)], "--params is not valid JSON"),
        (["--strategy", "sma_cross", "--params", "[1]", "--csv", str(BTC_1H)], "JSON object"),
        (["--strategy", "sma_cross", "--csv", "/nonexistent/candles.csv"], "No such candle file"),
        (["--strategy", "sma_cross", "--csv", str(BTC_1H), "--start", "2030-01-01"], "No candles"),
        (["--strategy", "sma_cross", "--csv", str(BTC_1H), "--start", "soon"], "not a date"),
        (["--strategy", "sma_cross"], "exactly one of --csv"),
        (["--strategy", "sma_cross", "--csv", str(BTC_1H), "--instrument", "1"], "exactly one of --csv"),
        (["--csv", str(BTC_1H)], "--strategy"),
        (["--strategy", "sma_cross", "--csv", str(BTC_1H), "--timeframe", "7m"], "Unknown timeframe"),
        (["--strategy", "sma_cross", "--csv", str(BTC_1H), "--fee", "3"], "settings.costs.fee"),
        (
            ["--strategy", "sma_cross", "--csv", str(BTC_1H), "--engine-settings", '{"sizing": {"mode": "x"}}'],
            "settings.sizing.mode",
        ),
        (["--strategy", "sma_cross", "--csv", str(BTC_1H), "--engine-settings", "{"], "not valid JSON"),
        (["--rules", "/nonexistent/rules.json", "--csv", str(BTC_1H)], "Cannot read the rules file"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message):
    with pytest.raises(CommandError) as caught:
        run(*args)
    assert caught.value.returncode == 2
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_rules_name_the_field(tmp_path):
    rules = tmp_path / "bad.json"
    rules.write_text(
        json.dumps({**RSI_RULES, "enter_long": {"left": {"indicator": "nope"}, "op": "<", "right": {"value": 1}}})
    )
    with pytest.raises(CommandError, match=r"rules\.enter_long") as caught:
        run("--rules", str(rules), "--csv", str(BTC_1H))
    assert caught.value.returncode == 2


@pytest.mark.django_db
def test_unknown_instrument():
    with pytest.raises(CommandError, match="no instrument 999999") as caught:
        run("--strategy", "sma_cross", "--instrument", "999999", "--timeframe", "1h")
    assert caught.value.returncode == 2


def test_a_csv_whose_name_does_not_tell_the_timeframe_needs_one(tmp_path):
    source = tmp_path / "candles.csv"
    load_candles("BTC-USDT_1h").iloc[:300].rename_axis("timestamp").reset_index().to_csv(source, index=False)
    with pytest.raises(CommandError, match="--timeframe"):
        run("--strategy", "sma_cross", "--csv", str(source))
    report = json.loads(run("--strategy", "sma_cross", "--csv", str(source), "--timeframe", "1h", "--json"))
    assert report["bars"] == 300


def test_exit_code_from_the_command_line():
    # given a real process, as a user would run it
    bad = subprocess.run(
        [sys.executable, "manage.py", "backtest", "--strategy", "no_such", "--csv", str(BTC_1H)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "no_such" in bad.stderr
    good = subprocess.run(
        [sys.executable, "manage.py", "backtest", "--strategy", "sma_cross", "--csv", str(BTC_1H), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["trades"] > 0
