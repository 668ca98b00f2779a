"""Fill rules on tiny hand-built frames, each expectation computed by hand in the test."""

import math

import pytest

from apps.backtests.engine import run_backtest
from tests.backtests.engine.support import Scripted, flat, frame

# Bars 0..4 as (open, high, low, close).
RISING = frame(
    [
        (100, 101, 99, 100),
        (102, 103, 101, 102),
        (104, 106, 103, 105),
        (108, 109, 107, 108),
        (110, 111, 109, 110),
    ]
)


def only_trade(result):
    assert len(result.trades) == 1, result.trades
    return result.trades.iloc[0]


def test_next_open_round_trip_with_fee():
    # given a buy signal on bar 0 and a sell signal on bar 2, fee 0.1 %
    result = run_backtest(Scripted(enter_long={0}, exit_long={2}), RISING, cash=10_000, fee=0.001)
    # then it buys at bar 1's open with all the cash (fee included) and sells at bar 3's open
    size = 10_000 / 1.001 / 102
    trade = only_trade(result)
    assert trade.side == "long"
    assert trade.entry_at == RISING.index[1] and trade.exit_at == RISING.index[3]
    assert trade.entry_price == 102 and trade.exit_price == 108
    assert trade["size"] == pytest.approx(size, rel=1e-12)
    assert trade.fees == pytest.approx(size * 102 * 0.001 + size * 108 * 0.001, rel=1e-12)
    final = size * 108 * 0.999
    assert trade.pnl == pytest.approx(final - 10_000, rel=1e-12)
    assert trade.return_pct == pytest.approx((final - 10_000) / (size * 102), rel=1e-12)
    assert trade.bars_held == 2 and trade.exit_reason == "signal"
    # equity is marked at each close: cash + units * close
    expected = [10_000, size * 102, size * 105, final, final]
    assert result.equity.tolist() == pytest.approx(expected, rel=1e-12)
    assert result.metrics["final_equity"] == pytest.approx(final, rel=1e-12)


def test_close_fills_trade_at_the_signal_bars_close():
    result = run_backtest(Scripted(enter_long={0}, exit_long={2}), RISING, fill="close", fee=0.0)
    trade = only_trade(result)
    assert (trade.entry_price, trade.exit_price) == (100, 105)
    assert trade.entry_at == RISING.index[0] and trade.exit_at == RISING.index[2]
    assert result.metrics["final_equity"] == pytest.approx(10_000 * 105 / 100, rel=1e-12)


def test_signal_on_the_last_bar_is_not_filled():
    result = run_backtest(Scripted(enter_long={4}), RISING)
    assert result.trades.empty
    assert result.equity.tolist() == [10_000.0] * 5
    closing = run_backtest(Scripted(enter_long={4}), RISING, fill="close")
    assert closing.trades.empty  # an entry at the last close would only pay fees


def test_position_open_at_the_end_is_closed_at_the_last_close():
    result = run_backtest(Scripted(enter_long={1}), RISING, fee=0.001)
    trade = only_trade(result)
    size = 10_000 / 1.001 / 104
    assert trade.exit_reason == "end" and trade.exit_at == RISING.index[4]
    assert trade.exit_price == 110
    assert result.metrics["final_equity"] == pytest.approx(size * 110 * 0.999, rel=1e-12)
    assert result.equity.iloc[-1] == pytest.approx(size * 110 * 0.999, rel=1e-12)


def test_stop_counts_first_when_stop_and_target_are_touched_in_one_bar():
    candles = frame([(100, 100, 100, 100), (100, 100, 100, 100), (100, 104, 97, 101), (101, 101, 101, 101)])
    result = run_backtest(Scripted(enter_long={0}), candles, fee=0.0, exits={"stop_loss": 0.02, "take_profit": 0.03})
    trade = only_trade(result)
    assert (trade.exit_reason, trade.exit_price) == ("stop", 98.0)
    assert trade.exit_at == candles.index[2]


def test_gap_through_the_stop_fills_at_the_open():
    candles = frame([(100, 100, 100, 100), (100, 100, 100, 100), (95, 96, 94, 95), (95, 95, 95, 95)])
    result = run_backtest(Scripted(enter_long={0}), candles, fee=0.0, exits={"stop_loss": 0.02})
    trade = only_trade(result)
    assert (trade.exit_reason, trade.exit_price) == ("stop", 95.0)
    assert trade.pnl == pytest.approx(10_000 / 100 * -5, rel=1e-12)


def test_gap_over_the_target_fills_at_the_better_open_with_the_maker_fee():
    candles = frame([(100, 100, 100, 100), (100, 100, 100, 100), (105, 106, 104, 105), (105, 105, 105, 105)])
    result = run_backtest(
        Scripted(enter_long={0}),
        candles,
        fee=0.001,
        costs={"maker_fee": 0.0},
        exits={"take_profit": 0.03},
    )
    trade = only_trade(result)
    size = 10_000 / 1.001 / 100
    assert (trade.exit_reason, trade.exit_price) == ("target", 105.0)
    assert trade.fees == pytest.approx(size * 100 * 0.001, rel=1e-12)  # entry taker, exit maker 0


def test_short_stop_and_target_mirror_the_long_rules():
    # a short at 100: stop 2 % above (102), target 3 % below (97)
    candles = frame([(100, 100, 100, 100), (100, 100, 100, 100), (99, 100, 96, 97), (97, 97, 97, 97)])
    result = run_backtest(Scripted(enter_short={0}), candles, fee=0.0, exits={"stop_loss": 0.02, "take_profit": 0.03})
    trade = only_trade(result)
    assert (trade.side, trade.exit_reason, trade.exit_price) == ("short", "target", 97.0)
    assert trade.pnl == pytest.approx(100 * 3, rel=1e-12)  # 100 units, 3 each


def test_trailing_stop_cannot_be_raised_and_hit_by_the_same_bar():
    candles = frame(
        [
            (100, 100, 100, 100),
            (100, 100, 100, 100),  # entry at 100, trail 95
            (100, 110, 104.4, 108),  # raises the trail to 104.5 only after this bar
            (108, 109, 104, 105),  # hits 104.5
            (105, 105, 105, 105),
        ]
    )
    result = run_backtest(Scripted(enter_long={0}), candles, fee=0.0, exits={"trailing_stop": 0.05})
    trade = only_trade(result)
    assert trade.exit_at == candles.index[3]
    assert trade.exit_reason == "trailing"
    assert trade.exit_price == pytest.approx(110 * 0.95, rel=1e-12)


def test_breakeven_moves_the_stop_to_the_entry_after_the_gain():
    candles = frame(
        [
            (100, 100, 100, 100),
            (100, 100, 100, 100),  # entry at 100
            (100, 103, 99, 102),  # 3 % gain reached: break-even armed after this bar (low 99 spared)
            (101, 102, 99.5, 100),  # back through 100
            (100, 100, 100, 100),
        ]
    )
    result = run_backtest(Scripted(enter_long={0}), candles, fee=0.001, exits={"breakeven_after": 0.02})
    trade = only_trade(result)
    assert trade.exit_at == candles.index[3]
    assert (trade.exit_reason, trade.exit_price) == ("breakeven", 100.0)
    assert trade.pnl == pytest.approx(-trade.fees, rel=1e-12)


@pytest.mark.parametrize(
    ("fill", "entry_bar", "exit_bar", "exit_price"), [("next_open", 1, 3, 108), ("close", 0, 2, 105)]
)
def test_time_exit_after_n_bars(fill, entry_bar, exit_bar, exit_price):
    result = run_backtest(Scripted(enter_long={0}), RISING, fill=fill, fee=0.0, exits={"time_exit_bars": 2})
    trade = only_trade(result)
    assert trade.exit_reason == "time"
    assert (trade.entry_at, trade.exit_at) == (RISING.index[entry_bar], RISING.index[exit_bar])
    assert trade.exit_price == exit_price and trade.bars_held == 2


def test_strategy_levels_override_the_percentages():
    candles = frame([(100, 100, 100, 100), (100, 101, 99, 100), (100, 104.5, 99, 104), (104, 104, 104, 104)])
    strategy = Scripted(enter_long={0}, stop_price={0: 97.0}, target_price={0: 104.0})
    result = run_backtest(strategy, candles, fee=0.0, exits={"stop_loss": 0.005, "take_profit": 0.5})
    trade = only_trade(result)  # a 0.5 % stop (99.5) would have hit on bar 1; 97 did not
    assert (trade.exit_reason, trade.exit_price) == ("target", 104.0)
    assert trade.exit_at == candles.index[2]


def test_opposite_entry_reverses():
    result = run_backtest(Scripted(enter_long={0}, enter_short={2}), RISING, fee=0.0)
    trades = result.trades
    assert trades["side"].tolist() == ["long", "short"]
    assert trades["exit_reason"].tolist() == ["signal", "end"]
    assert trades.iloc[0].exit_price == 108 and trades.iloc[1].entry_price == 108
    long_final = 10_000 / 102 * 108
    units = long_final / 108
    assert trades.iloc[1]["size"] == pytest.approx(units, rel=1e-12)
    assert result.metrics["final_equity"] == pytest.approx(long_final + units * (108 - 110), rel=1e-12)


def test_with_shorts_off_a_short_signal_only_closes_the_long():
    result = run_backtest(Scripted(enter_long={0}, enter_short={2}), RISING, fee=0.0, allow_short=False)
    trade = only_trade(result)
    assert (trade.side, trade.exit_reason, trade.exit_price) == ("long", "signal", 108)
    assert run_backtest(Scripted(enter_short={0}), RISING, allow_short=False).trades.empty


@pytest.mark.parametrize(
    "signals",
    [
        {"enter_long": {0}, "exit_long": {0}},
        {"enter_long": {0}, "enter_short": {0}},
        {"enter_short": {0}, "exit_short": {0}},
    ],
)
def test_conflicting_signals_enter_nothing(signals):
    assert run_backtest(Scripted(**signals), RISING).trades.empty


def test_entry_while_in_the_position_is_ignored():
    result = run_backtest(Scripted(enter_long={0, 1, 2}, exit_long={3}), RISING, fee=0.0)
    trade = only_trade(result)
    assert (trade.entry_price, trade.exit_price) == (102, 110)


def test_limit_entry_fills_at_the_limit_with_the_maker_fee():
    candles = frame([(100, 100, 100, 100), (100, 100.5, 98.5, 100), (100, 100, 100, 100)])
    result = run_backtest(
        Scripted(enter_long={0}),
        candles,
        fee=0.001,
        entry="limit",
        limit_offset=0.01,
        costs={"maker_fee": 0.0002},
    )
    trade = only_trade(result)
    size = 10_000 / 1.0002 / 99
    assert trade.entry_price == pytest.approx(99.0, rel=1e-12)
    assert trade["size"] == pytest.approx(size, rel=1e-12)
    assert trade.fees == pytest.approx(size * 99 * 0.0002 + size * 100 * 0.001, rel=1e-12)


def test_limit_entry_fills_at_a_better_open():
    candles = frame([(100, 100, 100, 100), (98, 99, 97, 98), (98, 98, 98, 98)])
    trade = only_trade(run_backtest(Scripted(enter_long={0}), candles, entry="limit", limit_offset=0.01))
    assert trade.entry_price == 98.0


def test_short_limit_entry_sells_above_the_close():
    candles = frame([(100, 100, 100, 100), (100, 101.5, 99, 100), (100, 100, 100, 100)])
    trade = only_trade(run_backtest(Scripted(enter_short={0}), candles, entry="limit", limit_offset=0.01))
    assert (trade.side, trade.entry_price) == ("short", 101.0)


def test_unfilled_limit_expires_after_one_bar():
    candles = frame([(100, 100, 100, 100), (100, 101, 99.5, 100), (95, 96, 90, 95), (95, 95, 95, 95)])
    result = run_backtest(Scripted(enter_long={0}), candles, entry="limit", limit_offset=0.01)
    assert result.trades.empty
    assert result.metrics["skipped_orders"] == 0  # an expired limit is not a skipped order


def test_lot_size_rounds_units_down():
    candles = flat(3, price=30.0)
    trade = only_trade(
        run_backtest(Scripted(enter_long={0}), candles, cash=1000, fee=0.0, instrument={"lot_size": 1.0})
    )
    assert trade["size"] == 33.0  # 1000 / 30 = 33.3


def test_lot_size_never_spends_more_than_the_cash_with_fees():
    candles = flat(3, price=25.0)
    trade = only_trade(
        run_backtest(Scripted(enter_long={0}), candles, cash=1000, fee=0.01, instrument={"lot_size": 1.0})
    )
    # 40 units would cost 1000 + 10 fee: one lot less
    assert trade["size"] == 39.0


def test_orders_under_the_minimum_notional_are_skipped_and_counted():
    candles = flat(6)
    result = run_backtest(
        Scripted(enter_long={0, 3}, exit_long={2}),
        candles,
        sizing={"mode": "fixed_amount", "amount": 50.0},
        instrument={"min_notional": 100.0},
    )
    assert result.trades.empty
    assert result.metrics["skipped_orders"] == 2


def test_tick_size_rounds_slipped_prices_against_the_trader():
    candles = frame([(100, 100, 100, 100), (100, 101, 99, 100), (108, 108, 108, 108), (108, 108, 108, 108)])
    result = run_backtest(
        Scripted(enter_long={0}, exit_long={1}),
        candles,
        fee=0.0,
        costs={"slippage": "fixed_bps", "slippage_bps": 10.0},
        instrument={"tick_size": 0.5},
    )
    trade = only_trade(result)
    assert trade.entry_price == 100.5  # 100.1 rounded up
    assert trade.exit_price == 107.5  # 107.892 rounded down


def test_volume_share_slippage():
    candles = frame([(100, 100, 100, 100, 1000), (100, 100, 100, 100, 1000), (100, 100, 100, 100, 1000)])
    result = run_backtest(Scripted(enter_long={0}), candles, fee=0.0, costs={"slippage": "volume_share", "impact": 0.1})
    trade = only_trade(result)
    # first guess 100 units (10 % of the bar) -> 101; units at that price; final price at those units
    units = 10_000 / 101.0
    price = 100 * (1 + 0.1 * units / 1000)
    assert trade["size"] == pytest.approx(units, rel=1e-12)
    assert trade.entry_price == pytest.approx(price, rel=1e-12)
    # the exit at the last close sells at a lower price, the same law
    assert trade.exit_price == pytest.approx(100 * (1 - 0.1 * units / 1000), rel=1e-12)


def test_sqrt_impact_slippage_uses_the_bar_range():
    candles = frame([(100, 100, 100, 100, 400), (100, 102, 98, 100, 400), (100, 100, 100, 100, 400)])
    result = run_backtest(Scripted(enter_long={0}), candles, fee=0.0, costs={"slippage": "sqrt_impact", "impact": 0.5})
    trade = only_trade(result)
    first = 100 + 0.5 * math.sqrt(100 / 400) * 4
    units = 10_000 / first
    assert trade["size"] == pytest.approx(units, rel=1e-12)
    assert trade.entry_price == pytest.approx(100 + 0.5 * math.sqrt(units / 400) * 4, rel=1e-12)
    assert trade.exit_price == 100.0  # the last bar has no range: no impact


def test_bar_without_volume_counts_as_full_participation():
    candles = frame([(100, 100, 100, 100, 0), (100, 100, 100, 100, 0), (100, 100, 100, 100, 0)])
    trade = only_trade(
        run_backtest(Scripted(enter_long={0}), candles, fee=0.0, costs={"slippage": "volume_share", "impact": 0.05})
    )
    assert trade.entry_price == pytest.approx(105.0, rel=1e-12)


@pytest.mark.parametrize(
    ("sizing", "units"),
    [
        ({"mode": "fixed_fraction", "fraction": 0.25}, 25.0),
        ({"mode": "fixed_amount", "amount": 1000.0}, 10.0),
        ({"mode": "risk_per_trade", "risk": 0.01}, 20.0),  # 100 risked over a 5 % stop
        ({"mode": "risk_per_trade", "risk": 0.1}, 100.0),  # 20,000 wanted, capped at the cash
        ({"mode": "kelly", "fraction": 0.4}, 40.0),  # no history yet: the fallback fraction
    ],
)
def test_sizing_modes(sizing, units):
    result = run_backtest(Scripted(enter_long={0}), flat(4), fee=0.0, sizing=sizing, exits={"stop_loss": 0.05})
    assert only_trade(result)["size"] == pytest.approx(units, rel=1e-12)


def test_risk_per_trade_measures_the_strategy_stop_before_the_stop_loss():
    # given: a strategy stop 2 below the signal close and a 10 % stop_loss
    strategy = Scripted(enter_long={0}, stop_price={0: 98.0})
    sizing = {"mode": "risk_per_trade", "risk": 0.01}

    # when
    result = run_backtest(strategy, flat(4), fee=0.0, sizing=sizing, exits={"stop_loss": 0.10})

    # then: 100 risked over the strategy's 2, not over the stop_loss's 10
    assert only_trade(result)["size"] == pytest.approx(50.0, rel=1e-12)


def test_risk_per_trade_from_atr_sizes_and_places_the_stop():
    # true range 4 on every bar, so ATR(3) = 4 from bar 3 on; 2 x ATR = 8 below the entry
    rows = [(100, 102, 98, 100)] * 6 + [(100, 100, 91, 95), (95, 95, 95, 95)]
    candles = frame(rows)
    result = run_backtest(
        Scripted(enter_long={1, 4}),
        candles,
        fee=0.0,
        sizing={"mode": "risk_per_trade", "risk": 0.01, "atr_period": 3, "atr_multiple": 2.0},
    )
    trade = only_trade(result)  # bar 1 has no ATR yet: skipped
    assert result.metrics["skipped_orders"] == 1
    assert trade["size"] == pytest.approx(100 / 8, rel=1e-12)
    assert (trade.exit_reason, trade.exit_price) == ("stop", 92.0)
    assert trade.pnl == pytest.approx(-100.0, rel=1e-12)


def test_fixed_fee_per_fill_and_cash_never_overspent():
    result = run_backtest(Scripted(enter_long={0}), flat(3), fee=0.002, costs={"fee_fixed": 5.0})
    trade = only_trade(result)
    spent = trade["size"] * trade.entry_price * 1.002 + 5.0
    assert spent == pytest.approx(10_000, rel=1e-12) and spent <= 10_000 + 1e-9
    assert trade.fees == pytest.approx(trade["size"] * 100 * 0.002 * 2 + 10.0, rel=1e-12)


def test_short_equity_is_cash_minus_units_at_the_close():
    candles = frame([(100, 100, 100, 100), (100, 100, 100, 100), (90, 90, 90, 90), (90, 90, 90, 90)])
    result = run_backtest(Scripted(enter_short={0}, exit_short={2}), candles, fee=0.0)
    assert result.equity.tolist() == pytest.approx([10_000, 10_000, 11_000, 11_000], rel=1e-12)
    assert only_trade(result).pnl == pytest.approx(1000.0, rel=1e-12)
