"""A paper deployment and a backtest over the same real candles make the same trades.

Real BTC/USDT 1h candles (../shared/data/ohlcv). The first HISTORY bars are stored as history;
the deployment starts; every later bar is fed one at a time through the platform's live path
(`candles_store_closed` -> announced after commit -> the paper venue matches the bar -> the
tick runs -> order_submit -> the paper venue). The backtest runs `run_backtest` over all the
bars with the deployment's own EngineSettings (`deployment_engine_settings`), its strategy's
signals masked before the first bar the deployment ticked (it never saw those). The round trips
read back from the deployment's fills must equal the backtest's trades: entry and exit times,
prices, sizes (to 1e-8 relative; the paper book is Decimal, the engine float64) and fees, with a
stop loss and a take profit set, and a short side (reversals).
"""

from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from apps.backtests.engine import run_backtest
from apps.marketdata import services as market_services
from apps.marketdata import timeframes
from apps.marketdata.models import Instrument
from apps.marketdata.storage import candles_write
from apps.strategies.base import Strategy
from apps.strategies.models import Deployment
from apps.strategies.services import deployments as services
from apps.strategies.services.deployments import deployment_engine_settings, deployment_strategy
from apps.trades.models import Fill
from tests.marketdata.ohlcv import load_candles
from tests.strategies.deploy_support import ticks_inline

__all__ = ["ticks_inline"]

HISTORY = 60
FED = 300
REL = 1e-8


class Masked(Strategy):
    """The deployment's strategy with its signals cleared before ``start`` (bars it never ticked)."""

    key = "test_masked"

    def __init__(self, inner: Strategy, start: pd.Timestamp) -> None:
        super().__init__()
        self.inner = inner
        self.start = start
        self.timeframe = inner.timeframe

    def warmup(self) -> int:
        return self.inner.warmup()

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        frame = self.inner.compute(candles)
        before = frame.index < self.start
        for column in ("enter_long", "exit_long", "enter_short", "exit_short"):
            if column in frame:
                frame[column] = frame[column].astype(bool) & ~before
        return frame


@pytest.fixture
def btc(db: Any) -> tuple[Instrument, pd.DataFrame]:
    candles = load_candles("BTC-USDT_1h").iloc[-(HISTORY + FED) :]
    instrument = market_services.instrument_get_or_create(
        venue="parity", symbol="BTC/USDT", tick_size="0.01", lot_size="0.00001", min_notional="10"
    )
    candles_write(instrument=instrument, timeframe="1h", frame=candles.iloc[:HISTORY], source="test")
    return instrument, candles


def round_trips(deployment: Deployment) -> list[dict[str, Any]]:
    """Entry fill -> the fills that closed it, as the engine's trades: side, times (bar open),
    prices, size, fees (entry + exit)."""
    trades: list[dict[str, Any]] = []
    open_trade: dict[str, Any] | None = None
    fills = Fill.objects.filter(deployment=deployment).select_related("order")
    # Within one bar: a market exit at the open, then the entry at the open, then the bracket's
    # stop or target inside the bar (the engine's order), whatever order they were recorded in.
    phase = {"exit": 0, "close": 0, "entry": 1}
    for fill in sorted(fills, key=lambda f: (f.filled_at, phase.get(f.order.leg, 2), f.pk)):
        bar = timeframes.floor(fill.filled_at, deployment.timeframe)
        if not fill.order.reduce_only:
            assert open_trade is None, "an entry while a position was open"
            open_trade = {
                "side": "long" if fill.side == "buy" else "short",
                "entry_at": bar,
                "entry_price": float(fill.price),
                "size": float(fill.quantity),
                "fees": float(fill.fee),
                "closed": Decimal(0),
            }
            continue
        assert open_trade is not None, "an exit without a position"
        open_trade["closed"] += fill.quantity
        open_trade["fees"] += float(fill.fee)
        open_trade["exit_at"] = bar
        open_trade["exit_price"] = float(fill.price)
        open_trade["reason"] = fill.order.leg
        if open_trade["closed"] >= Decimal(repr(open_trade["size"])):
            trades.append(open_trade)
            open_trade = None
    return trades


def close(a: float, b: float) -> bool:
    return abs(a - b) <= REL * max(abs(a), abs(b), 1e-12)


def test_a_paper_deployment_trades_like_the_backtest_on_real_candles(
    btc: tuple[Instrument, pd.DataFrame], alice: Any, ticks_inline: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from apps.accounts.services import account_connect_paper

    instrument, candles = btc
    costs = {"fee": 0.001, "slippage": "fixed_bps", "slippage_bps": 5.0}
    account = account_connect_paper(
        owner=alice, name="Parity", balances={"USDT": Decimal("1000000"), "BTC": Decimal("0")}, costs=costs
    )
    deployment = services.deployment_create(
        owner=alice,
        account_id=account.pk,
        instrument_ids=[instrument.pk],
        timeframe="1h",
        capital=Decimal("10000"),
        strategy_key="sma_cross",
        params={"fast": 5, "slow": 20, "short": True},
        settings={
            "costs": costs,
            "sizing": {"mode": "fixed_fraction", "fraction": 0.5},
            "exits": {"stop_loss": 0.015, "take_profit": 0.03},
        },
    )
    deployment = services.deployment_start(deployment=deployment, mode="paper")

    # when every later bar is fed through the live path, one at a time
    for i in range(HISTORY, HISTORY + FED):
        with django_capture_on_commit_callbacks(execute=True):
            market_services.candles_store_closed(
                instrument=instrument, timeframe="1h", frame=candles.iloc[i : i + 1], source="test"
            )

    # then its round trips are the backtest's trades
    settings = deployment_engine_settings(deployment=deployment, instrument=instrument)
    strategy = Masked(deployment_strategy(deployment=deployment), candles.index[HISTORY])
    result = run_backtest(strategy, candles, settings=settings)
    expected = [t for t in result.trades.to_dict("records") if t["exit_reason"] != "end"]
    actual = round_trips(deployment)
    assert len(expected) >= 5, "the sample should trade"
    assert [(t["side"], t["entry_at"], t["exit_at"]) for t in actual[: len(expected)]] == [
        (t["side"], t["entry_at"].to_pydatetime(), t["exit_at"].to_pydatetime()) for t in expected
    ]
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert close(got["entry_price"], want["entry_price"]), (got, want)
        assert close(got["exit_price"], want["exit_price"]), (got, want)
        assert close(got["size"], want["size"]), (got, want)
        assert close(got["fees"], want["fees"]), (got, want)
    assert {t["reason"] for t in actual} >= {"exit"}
    assert isinstance(actual[0]["entry_at"], datetime)
