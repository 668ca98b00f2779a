"""The per-fill cost functions the paper venue calls, and their agreement with the loop."""

import math

import pytest

from apps.backtests.engine import EngineSettings, fee_for, fill_price, run_backtest
from apps.backtests.engine.settings import CostSettings
from tests.backtests.engine.support import Scripted, random_signals
from tests.marketdata.ohlcv import load_candles


@pytest.mark.parametrize("side", [1, -1])
def test_fill_price_models(side):
    none = CostSettings()
    bps = CostSettings(slippage="fixed_bps", slippage_bps=20.0)
    share = CostSettings(slippage="volume_share", impact=0.2)
    root = CostSettings(slippage="sqrt_impact", impact=0.3)
    assert fill_price(side, 100.0, 5.0, 50.0, 2.0, none) == 100.0
    assert fill_price(side, 100.0, 5.0, 50.0, 2.0, bps) == pytest.approx(100.0 * (1 + side * 0.002))
    assert fill_price(side, 100.0, 5.0, 50.0, 2.0, share) == pytest.approx(100.0 * (1 + side * 0.2 * 0.1))
    assert fill_price(side, 100.0, 5.0, 50.0, 2.0, root) == pytest.approx(100.0 + side * 0.3 * math.sqrt(0.1) * 2.0)
    # participation is capped at the whole bar; no volume = the whole bar
    assert fill_price(side, 100.0, 500.0, 50.0, 2.0, share) == pytest.approx(100.0 * (1 + side * 0.2))
    assert fill_price(side, 100.0, 5.0, 0.0, 2.0, share) == pytest.approx(100.0 * (1 + side * 0.2))


def test_slippage_always_worsens_the_fill():
    for costs in (
        CostSettings(slippage="fixed_bps", slippage_bps=1.0),
        CostSettings(slippage="volume_share"),
        CostSettings(slippage="sqrt_impact"),
    ):
        assert fill_price(1, 100.0, 1.0, 10.0, 3.0, costs) > 100.0
        assert fill_price(-1, 100.0, 1.0, 10.0, 3.0, costs) < 100.0


def test_fill_price_rounds_to_the_tick_against_the_trader():
    costs = CostSettings(slippage="fixed_bps", slippage_bps=10.0)
    assert fill_price(1, 100.0, 1.0, 10.0, 1.0, costs, tick_size=0.25) == 100.25
    assert fill_price(-1, 100.0, 1.0, 10.0, 1.0, costs, tick_size=0.25) == 99.75
    # prices already on the grid stay put despite float error (0.7 / 0.1 = 6.999...)
    assert fill_price(1, 0.7, 1.0, 10.0, 0.0, CostSettings(), tick_size=0.1) == pytest.approx(0.7)
    assert fill_price(-1, 0.3, 1.0, 10.0, 0.0, CostSettings(), tick_size=0.1) == pytest.approx(0.3)


def test_fill_price_refuses_a_bad_side():
    with pytest.raises(ValueError, match="side"):
        fill_price(0, 100.0, 1.0, 1.0, 1.0, CostSettings())


def test_fee_for_maker_taker_and_fixed():
    costs = CostSettings(fee=0.001, maker_fee=0.0002, fee_fixed=0.5)
    assert fee_for(10_000.0, False, costs) == pytest.approx(10.5)
    assert fee_for(10_000.0, True, costs) == pytest.approx(2.5)
    assert fee_for(10_000.0, True, CostSettings(fee=0.001)) == pytest.approx(10.0)  # maker defaults to fee


@pytest.mark.parametrize(
    "costs",
    [
        {"slippage": "volume_share", "impact": 0.3, "fee": 0.002, "fee_fixed": 0.3},
        {"slippage": "sqrt_impact", "impact": 0.4, "fee": 0.0005},
        {"slippage": "fixed_bps", "slippage_bps": 7.5, "fee": 0.001, "fee_fixed": 1.0},
    ],
)
def test_the_loop_charges_what_the_plain_functions_say(costs):
    # given real candles, signal-only exits (market orders at the next open) and a tick grid
    candles = load_candles("ETH-USDT_1h")
    settings = EngineSettings.from_dict({"costs": costs, "instrument": {"tick_size": 0.01}})
    strategy = Scripted(**random_signals(len(candles), seed=5))
    result = run_backtest(strategy, candles, settings=settings)
    assert len(result.trades) > 50
    position = {t: i for i, t in enumerate(candles.index)}
    o, h, lo, c, v = (candles[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    for trade in result.trades.itertuples():
        side = 1 if trade.side == "long" else -1
        e, x = position[trade.entry_at], position[trade.exit_at]
        entry = fill_price(side, o[e], trade.size, v[e], h[e] - lo[e], settings.costs, 0.01)
        ref = c[x] if trade.exit_reason == "end" else o[x]
        exit_ = fill_price(-side, ref, trade.size, v[x], h[x] - lo[x], settings.costs, 0.01)
        assert trade.entry_price == pytest.approx(entry, rel=1e-12)
        assert trade.exit_price == pytest.approx(exit_, rel=1e-12)
        fees = fee_for(trade.size * entry, False, settings.costs) + fee_for(trade.size * exit_, False, settings.costs)
        assert trade.fees == pytest.approx(fees, rel=1e-12)
