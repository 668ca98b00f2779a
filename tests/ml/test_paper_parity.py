"""A deployed ML strategy on paper gives the same signals (and trades) as its backtest over the
same candles.

As tests/strategies/test_paper_parity.py, with the ``ml`` strategy: an ML strategy is trained on
the first HISTORY real BTC/USDT 1h bars (stored), promoted, and deployed on paper with shorts
allowed; every later bar is fed one at a time through the platform's live path
(`candles_store_closed` -> the paper venue matches the bar -> the tick computes the model's
signals over its window of the newest bars -> order_submit -> the paper venue). The backtest runs
`run_backtest` over all the bars with the deployment's own EngineSettings and the same promoted
model, its signals masked before the first bar the deployment ticked.

Signals: every action the deployment recorded (a Signal row per bar it acted on) is the one the
engine's trades imply (an entry fills at the open after its signal bar; an exit on a signal
likewise), and nothing else. Trades: the round trips read back from the deployment's fills equal
the backtest's: sides, times, prices, sizes and fees (to 1e-8 relative).
"""

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from apps.backtests.engine import run_backtest
from apps.marketdata import services as market_services
from apps.marketdata.models import Instrument
from apps.ml import services
from apps.strategies.models import Signal
from apps.strategies.services.deployments import deployment_engine_settings, deployment_strategy
from tests.ml.support import config, make_instrument, paper_account, real_candles, store
from tests.strategies.deploy_support import ticks_inline
from tests.strategies.test_paper_parity import Masked, close, round_trips

__all__ = ["ticks_inline"]

pytestmark = pytest.mark.django_db

HISTORY = 1500
FED = 150
HOUR = timedelta(hours=1)


@pytest.fixture
def btc_parity(db: Any) -> tuple[Instrument, pd.DataFrame]:
    candles = real_candles(HISTORY + FED)
    instrument = make_instrument(venue="parity")
    store(instrument, candles.iloc[:HISTORY])
    return instrument, candles


def feed(instrument: Instrument, candles: pd.DataFrame, bars: range, capture: Any) -> None:
    """Store the closed bars one at a time through the live path (paper matching, ticks)."""
    for i in bars:
        with capture(execute=True):
            market_services.candles_store_closed(
                instrument=instrument, timeframe="1h", frame=candles.iloc[i : i + 1], source="test"
            )


def acted_on(deployment: Any, last_bar: Any) -> dict[Any, str]:
    """The actions the deployment recorded, by bar (the last bar's cannot fill in either)."""
    return {
        s.bar_ts: s.action
        for s in Signal.objects.filter(deployment=deployment).exclude(action="none")
        if s.bar_ts != last_bar
    }


def expected_signals(trades: list[dict[str, Any]]) -> dict[Any, str]:
    """The actions the engine's trades imply, by signal bar (the bar before the fill)."""
    actions: dict[Any, str] = {}
    for trade in trades:
        if trade["exit_reason"] == "signal":
            actions[trade["exit_at"].to_pydatetime() - HOUR] = f"exit_{trade['side']}"
    for trade in trades:  # a reversal is recorded as the entry it makes
        actions[trade["entry_at"].to_pydatetime() - HOUR] = f"enter_{trade['side']}"
    return actions


def test_a_paper_ml_deployment_gives_the_signals_and_trades_of_its_backtest(
    btc_parity, alice, sent, ticks_inline, django_capture_on_commit_callbacks
):
    from apps.accounts.services import account_connect_paper

    instrument, candles = btc_parity
    ml = services.ml_strategy_create(
        owner=alice,
        data=config(
            instrument,
            decision={"threshold": 0.52, "exit_threshold": 0.5, "allow_short": True},
            validation={"n_splits": 3, "embargo": 6, "history_bars": HISTORY},
        ),
    )
    version = services.training_run_now(ml_strategy=ml, trigger="manual")
    assert version.status == "promoted", version.error
    costs = {"fee": 0.001, "slippage": "fixed_bps", "slippage_bps": 5.0}
    account = account_connect_paper(
        owner=alice, name="Parity", balances={"USDT": Decimal("1000000"), "BTC": Decimal("0")}, costs=costs
    )
    deployment = services.ml_deploy(
        owner=alice,
        ml_strategy=ml,
        data={
            "account_id": account.pk,
            "capital": "10000",
            "settings": {"costs": costs, "sizing": {"mode": "fixed_fraction", "fraction": 0.5}},
        },
    )
    assert deployment.status == "paper" and deployment.settings["allow_short"] is True

    # when every later bar is fed through the live path, one at a time
    feed(instrument, candles, range(HISTORY, HISTORY + FED), django_capture_on_commit_callbacks)

    # then the backtest over the same candles with the same model...
    settings = deployment_engine_settings(deployment=deployment, instrument=instrument)
    strategy = Masked(deployment_strategy(deployment=deployment), candles.index[HISTORY])
    result = run_backtest(strategy, candles, settings=settings)
    trades = result.trades.to_dict("records")
    assert len(trades) >= 5, "the sample should trade"

    # ...implies exactly the signals the deployment acted on (the last bar's cannot fill in either)
    last_bar = candles.index[-1].to_pydatetime()
    acted = acted_on(deployment, last_bar)
    assert acted == {bar: action for bar, action in expected_signals(trades).items() if bar != last_bar}
    assert {"enter_long", "enter_short"} <= set(acted.values())

    # ...and the same trades
    expected = [t for t in trades if t["exit_reason"] != "end"]
    actual = round_trips(deployment)
    assert [(t["side"], t["entry_at"], t["exit_at"]) for t in actual[: len(expected)]] == [
        (t["side"], t["entry_at"].to_pydatetime(), t["exit_at"].to_pydatetime()) for t in expected
    ]
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert close(got["entry_price"], want["entry_price"]), (got, want)
        assert close(got["exit_price"], want["exit_price"]), (got, want)
        assert close(got["size"], want["size"]), (got, want)
        assert close(got["fees"], want["fees"]), (got, want)


def test_after_a_promotion_the_deployment_trades_the_new_model_as_its_backtest_does(
    btc_parity, alice, sent, ticks_inline, django_capture_on_commit_callbacks
):
    """A promotion changes what a running deployment trades, and with it the window its ticks
    need: v1's features settle within the tick's minimum window (200 bars), v2 adds the RSI,
    which needs 250. The deployment's next ticks read v2's window and act as v2's backtest does."""
    instrument, candles = btc_parity
    short_memory = ["ret_1", "ret_3", "ret_12", "vol_12", "bb_pctb", "volume_z"]
    ml = services.ml_strategy_create(
        owner=alice,
        data=config(
            instrument,
            features=short_memory,
            # v1 never trades: its probabilities do not reach 0.99
            decision={"threshold": 0.99, "exit_threshold": 0.5, "allow_short": False},
            validation={"n_splits": 3, "embargo": 6, "history_bars": HISTORY},
        ),
    )
    assert services.training_run_now(ml_strategy=ml, trigger="manual").status == "promoted"
    sizing = {"sizing": {"mode": "fixed_fraction", "fraction": 0.5}}
    deployment = services.ml_deploy(
        owner=alice,
        ml_strategy=ml,
        data={"account_id": paper_account(alice, "1000000").pk, "capital": "10000", "settings": sizing},
    )
    switch = HISTORY + 10
    feed(instrument, candles, range(HISTORY, switch), django_capture_on_commit_callbacks)
    assert not Signal.objects.filter(deployment=deployment).exclude(action="none").exists()

    # when v2, with the RSI and a threshold it reaches, is promoted by hand while the deployment
    # runs (a margin of 1 keeps any training from winning on its own)
    services.ml_strategy_update(
        ml_strategy=ml,
        data={
            "features": [*short_memory, "rsi_14"],
            "decision": {"threshold": 0.52, "exit_threshold": 0.5},
            "promotion_margin": 1.0,
        },
    )
    v2 = services.training_run_now(ml_strategy=ml, trigger="manual")
    assert v2.status == "rejected", v2.error
    services.version_promote(version=v2, actor=alice)
    feed(instrument, candles, range(switch, HISTORY + FED), django_capture_on_commit_callbacks)

    # then its actions from the switch on are v2's backtest's
    settings = deployment_engine_settings(deployment=deployment, instrument=instrument)
    strategy = Masked(deployment_strategy(deployment=deployment), candles.index[switch])
    trades = run_backtest(strategy, candles, settings=settings).trades.to_dict("records")
    assert len(trades) >= 3, "v2 should trade"
    last_bar = candles.index[-1].to_pydatetime()
    acted = acted_on(deployment, last_bar)
    assert acted == {bar: action for bar, action in expected_signals(trades).items() if bar != last_bar}
