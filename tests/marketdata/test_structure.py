"""Price-structure indicators: known answers on hand-made candles, no look-ahead on real candles,
and the chart object lists agreeing with the per-bar columns. No database."""

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from apps.marketdata.indicators import structure as st
from tests.marketdata.ohlcv import load_candles as real_candles

DATASETS = ("BTC-USDT_1h", "SPY_1d")


def candles_from(close: Any, *, half_range: float = 0.5, open_: Any = None, high: Any = None, low: Any = None):
    close = np.asarray(close, dtype=float)
    open_ = close.copy() if open_ is None else np.asarray(open_, dtype=float)
    high = np.maximum(open_, close) + half_range if high is None else np.asarray(high, dtype=float)
    low = np.minimum(open_, close) - half_range if low is None else np.asarray(low, dtype=float)
    index = pd.date_range("2024-01-01", periods=len(close), freq="h", tz="UTC", name="timestamp")
    volume = np.full(len(close), 1000.0)
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)


def triangle(n: int, low: float, high: float, half_period: int, start_up: bool = True) -> np.ndarray:
    """A zigzag between low and high, ``half_period`` bars per leg."""
    phase = np.arange(n) % (2 * half_period)
    up = np.where(phase < half_period, phase, 2 * half_period - phase) / half_period
    wave = up if start_up else 1 - up
    return low + (high - low) * wave


def assert_no_lookahead(func: Callable[..., pd.DataFrame], candles: pd.DataFrame, cuts: list[int]) -> None:
    full = func(candles)
    assert full.notna().to_numpy().any(), "nothing computed: the comparison would be vacuous"
    for cut in cuts:
        part = func(candles.iloc[:cut])
        pd.testing.assert_frame_equal(part, full.iloc[:cut], check_exact=True, obj=f"rows 0..{cut - 1}")


# ---- known answers -------------------------------------------------------------------------------


def test_pivots_v_shape_low_is_confirmed_right_bars_after_the_bottom():
    # given: 20 bars down to the bottom at bar 20, then 20 bars up
    close = np.r_[np.linspace(120, 100, 21), np.linspace(101, 120, 20)]
    candles = candles_from(close)

    # when
    frame = st.pivots(candles, left=5, right=5)

    # then
    lows = frame["pivot_low"].dropna()
    assert list(lows.index) == [candles.index[25]]
    assert lows.iloc[0] == pytest.approx(99.5)
    assert frame["pivot_low_at"].iloc[25] == candles.index[20]
    assert frame["last_pivot_low"].iloc[:25].isna().all()
    assert (frame["last_pivot_low"].iloc[25:] == 99.5).all()
    assert frame["pivot_high"].isna().all()
    assert frame["pivot_low_strength"].iloc[25] > 0


def test_pivot_points_lists_only_pivots_confirmed_by_the_bar():
    close = np.r_[np.linspace(120, 100, 21), np.linspace(101, 120, 20)]
    candles = candles_from(close)

    assert st.pivot_points(candles, at=24) == []
    [point] = st.pivot_points(candles, at=25)
    assert point["kind"] == "low"
    assert point["at"] == candles.index[20]
    assert point["confirmed_at"] == candles.index[25]
    assert point["price"] == pytest.approx(99.5)


def _range_candles() -> pd.DataFrame:
    # Zigzag between 100 and 110: peaks at bars 10, 30, 50 (highs 110.5), troughs at 20, 40 (99.5).
    close = np.r_[triangle(56, 100, 110, 10), np.full(10, 105.0)]
    return candles_from(close)


def test_support_resistance_finds_a_level_touched_three_times():
    candles = _range_candles()

    frame = st.support_resistance(candles, min_touches=2)

    last = frame.iloc[-1]
    assert last["resistance"] == pytest.approx(110.5)
    assert last["resistance_strength"] >= 3
    assert last["support"] == pytest.approx(99.5)
    # The resistance only exists once its second peak is confirmed (bar 30 + right).
    assert np.isnan(frame["resistance"].iloc[34])
    assert frame["resistance"].iloc[35] == pytest.approx(110.5)
    [level] = [lv for lv in st.support_resistance_levels(candles) if lv["kind"] == "resistance"]
    assert level["touches"] == 3
    assert level["strength"] == pytest.approx(3.5)  # 3 touches + 0.5 volume bonus at average volume


def test_support_resistance_flags_a_break_and_its_retest():
    # given: the range, then a close far above 110.5, then a pullback to it that holds
    close = np.r_[triangle(56, 100, 110, 10), np.full(5, 105.0), [108, 114, 116, 115, 113, 111, 113, 115, 117]]
    candles = candles_from(close)

    frame = st.support_resistance(candles)

    assert list(np.flatnonzero(frame["break_up"].to_numpy())) == [62]  # close 114 > 110.5 + tolerance
    assert frame["support"].iloc[63] == pytest.approx(110.5)  # the broken resistance is now support
    # bar 65 (low 112.5) stays clear of the level; bar 66 (low 110.5, close 111) touches and holds
    assert list(np.flatnonzero(frame["retest_support"].to_numpy())) == [66]
    assert not frame["break_down"].any()
    assert not frame["retest_resistance"].any()
    [level] = [lv for lv in st.support_resistance_levels(candles) if lv["price"] == pytest.approx(110.5)]
    assert (level["kind"], level["breaks"], level["retests"]) == ("support", 1, 1)
    assert level["strength"] == pytest.approx(3 + 1 + 0.5)


def test_support_resistance_drops_a_level_broken_more_than_max_breaks_times():
    # given: the range, then closes through 110.5 up (bar 61), down (63) and up again (65)
    close = np.r_[triangle(56, 100, 110, 10), np.full(5, 105.0), [114, 114, 106, 106, 115, 115]]
    candles = candles_from(close)

    frame = st.support_resistance(candles, max_breaks=2)

    assert list(np.flatnonzero(frame["break_up"].to_numpy())) == [61, 65]
    assert list(np.flatnonzero(frame["break_down"].to_numpy())) == [63]
    assert frame["resistance"].iloc[64] == pytest.approx(110.5)
    assert frame["support"].iloc[65] == pytest.approx(99.5)  # 110.5 is gone, not support
    assert all(lv["price"] != pytest.approx(110.5) for lv in st.support_resistance_levels(candles, max_breaks=2))
    [kept] = [lv for lv in st.support_resistance_levels(candles, max_breaks=3) if lv["price"] == pytest.approx(110.5)]
    assert kept["breaks"] == 3


def _uptrend_candles() -> pd.DataFrame:
    # Drift 0.5 a bar plus a 12-bar zigzag of amplitude 6: troughs at bars 6, 18, 30, ...
    t = np.arange(100)
    return candles_from(100 + 0.5 * t + triangle(len(t), 0, 6, 6, start_up=False))


def test_trendlines_uptrend_gives_a_rising_support_line():
    candles = _uptrend_candles()
    low = candles["low"].to_numpy()

    frame = st.trendlines(candles, left=3, right=3)

    # the troughs lie on low[6] + 0.5 * (t - 6); the line exists once the second one is confirmed
    expected = low[6] + 0.5 * (np.arange(len(candles)) - 6)
    assert frame["support_line"].iloc[:21].isna().all()
    for t in (21, 50, 80, 99):
        assert frame["support_line"].iloc[t] == pytest.approx(expected[t])
    assert frame["support_line_strength"].iloc[99] == pytest.approx(8 + 0.5)  # troughs 6..90, average volume
    assert not frame["breakout_down"].any()
    [line] = [ln for ln in st.trendline_lines(candles, left=3, right=3) if ln["kind"] == "support"]
    assert line["slope_per_bar"] == pytest.approx(0.5)
    assert line["end_price"] == pytest.approx(expected[99])
    assert line["touches"] == 8


def test_trendlines_flags_a_break_of_the_support_line():
    candles = _uptrend_candles()
    crash = candles_from(np.r_[candles["close"].to_numpy(), [140, 130, 120]])

    frame = st.trendlines(crash, left=3, right=3)

    assert frame["breakout_down"].iloc[-3:].any()
    assert not frame["breakout_down"].iloc[:-3].any()


def _demand_candles() -> pd.DataFrame:
    # 30 ordinary bars (range 1, body 0.5), a base of 3 tight bars (30-32), an up impulse of about
    # 3 ATR (33), then drift up, a pullback into the base (39) and a bounce.
    close = list(100 + 0.5 * (np.arange(30) % 2))
    open_ = list(100.5 - 0.5 * (np.arange(30) % 2))
    high = [max(o, c) + 0.25 for o, c in zip(open_, close, strict=True)]
    low = [min(o, c) - 0.25 for o, c in zip(open_, close, strict=True)]
    base_and_impulse = [
        (100.0, 100.05, 100.1, 99.9),
        (100.05, 100.0, 100.15, 99.95),
        (100.0, 100.1, 100.12, 99.92),
        (100.1, 102.6, 102.7, 100.05),
    ]
    for o, c, h, lo in base_and_impulse:
        open_.append(o)
        close.append(c)
        high.append(h)
        low.append(lo)
    for c in (103.0, 103.4, 102.5, 101.5, 100.8, 100.3, 101.5, 103.0):
        open_.append(close[-1])
        high.append(max(c, close[-1]) + 0.2)
        low.append(min(c, close[-1]) - 0.2)
        close.append(c)
    return candles_from(close, open_=open_, high=high, low=low)


def test_supply_demand_zones_base_then_impulse_gives_a_demand_zone_over_the_base():
    candles = _demand_candles()
    impulse = 33

    frame = st.supply_demand_zones(candles)

    assert frame["demand_low"].iloc[:impulse].isna().all()  # known only once the impulse closed
    assert frame["demand_low"].iloc[impulse] == pytest.approx(99.9)
    assert frame["demand_high"].iloc[impulse] == pytest.approx(100.15)
    assert frame["supply_low"].isna().all()
    fresh = frame["demand_strength"].iloc[impulse]
    assert fresh > 2.5  # impulse of about 3 ATR plus the volume bonus
    tested = np.flatnonzero(frame["demand_tested"].to_numpy())
    assert list(tested) == [39]  # low 100.1 dips into the zone, close 100.3 holds above it
    assert not frame["in_demand"].any()
    assert frame["demand_strength"].iloc[39] == pytest.approx(fresh / 2)  # one test halves it
    [box] = st.supply_demand_zone_boxes(candles)
    assert (box["kind"], box["tests"], box["reactions"], box["fresh"]) == ("demand", 1, 1, False)
    assert box["start_at"] == candles.index[30]


def test_supply_demand_zones_close_below_the_zone_voids_it():
    candles = _demand_candles()
    broken = pd.concat([candles, candles_from([99.0]).set_axis([candles.index[-1] + pd.Timedelta(hours=1)])])

    frame = st.supply_demand_zones(broken)

    assert np.isnan(frame["demand_low"].iloc[-1])
    assert st.supply_demand_zone_boxes(broken) == []


def _swing_candles() -> pd.DataFrame:
    # Down to a low of 100 (bar 9), up to a high of 200 (bar 18), then a pullback to 159 whose low
    # is not confirmed yet, so the latest swing is still 100 -> 200.
    close = np.r_[np.linspace(130, 101, 10), np.linspace(111, 199, 9), np.linspace(190, 160, 4)]
    return candles_from(close, half_range=1.0)


def test_fibonacci_levels_of_a_swing_from_100_to_200():
    candles = _swing_candles()

    frame = st.fibonacci(candles, left=3, right=3, levels=(0.382, 0.5, 0.618, 0.7), extensions=(1.618,))

    last = frame.iloc[-1]
    assert last["swing_direction"] == 1
    assert (last["fib_0"], last["fib_100"]) == (200.0, 100.0)
    assert last["fib_0.5"] == pytest.approx(150.0)
    assert last["fib_0.618"] == pytest.approx(138.2)
    assert last["fib_0.7"] == pytest.approx(130.0)  # a custom level
    assert last["fib_ext_1.618"] == pytest.approx(261.8)
    peak = 18
    assert frame["swing_direction"].iloc[peak + 3 - 1] != 1  # the top is not confirmed yet
    assert frame["fib_0"].iloc[peak + 3] == 200.0


def test_fibonacci_levels_listing_matches_the_columns():
    candles = _swing_candles()

    levels = {level["name"]: level for level in st.fibonacci_levels(candles, left=3, right=3)}

    assert levels["fib_0.5"]["price"] == pytest.approx(150.0)
    assert levels["fib_0.618"]["strength"] == 2.0
    assert levels["fib_0.236"]["strength"] == 1.0
    assert levels["fib_ext_1.272"]["kind"] == "extension"
    assert levels["fib_0"]["swing_end_at"] == candles.index[18]


def test_confluence_range_edges_agree_across_sources():
    candles = _range_candles()

    frame = st.confluence(candles)

    last = frame.iloc[-1]
    # S/R level, flat trendline and swing end of the Fibonacci grid all sit at 110.5
    assert last["confluence_resistance"] == pytest.approx(110.5, abs=0.01)
    assert last["confluence_resistance_sources"] >= 2
    assert last["confluence_support"] == pytest.approx(99.5, abs=0.01)
    assert last["confluence_score"] >= 2
    assert frame["confluence_resistance"].iloc[:30].isna().all()  # nothing agrees before structure exists


def test_confluence_rejects_unknown_parameters():
    with pytest.raises(TypeError, match="nonsense"):
        st.confluence(_range_candles(), nonsense=1)


# ---- no look-ahead on real candles ---------------------------------------------------------------

PER_BAR = [st.pivots, st.support_resistance, st.trendlines, st.supply_demand_zones, st.fibonacci, st.confluence]


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("func", PER_BAR, ids=lambda func: func.__name__)
def test_structure_has_no_lookahead_on_real_candles(func, name):
    candles = real_candles(name)

    # Many cuts: a leak only shows where it changes a row before the cut (for S/R, a leaked pivot
    # must land on a level), so a handful of cuts can miss one.
    assert_no_lookahead(func, candles, np.linspace(40, len(candles) - 1, 24).astype(int).tolist())


def test_lookahead_check_catches_a_centred_window():
    # The check itself must be able to fail: a centred rolling max reads the future.
    candles = real_candles("SPY_1d").iloc[:500]

    def peeking(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[["high"]].rolling(5, center=True).max()

    with pytest.raises(AssertionError):
        assert_no_lookahead(peeking, candles, [250])


# ---- object lists agree with the per-bar columns -------------------------------------------------


@pytest.fixture(params=DATASETS)
def real(request: pytest.FixtureRequest) -> pd.DataFrame:
    return real_candles(request.param)


def _bars(candles: pd.DataFrame) -> list[int]:
    n = len(candles)
    return [n // 4, n // 2, n - 1]


def test_pivot_points_agree_with_columns(real):
    frame = st.pivots(real)
    for bar in _bars(real):
        points = st.pivot_points(real, at=bar)
        highs = [p for p in points if p["kind"] == "high"]
        assert len(highs) == frame["pivot_high"].iloc[: bar + 1].notna().sum()
        assert highs[-1]["price"] == frame["last_pivot_high"].iloc[bar]
        lows = [p for p in points if p["kind"] == "low"]
        assert lows[-1]["price"] == frame["last_pivot_low"].iloc[bar]


def _nan_or(values: list[float], pick: Callable[[list[float]], float]) -> float:
    return pick(values) if values else np.nan


def test_support_resistance_levels_agree_with_columns(real):
    frame = st.support_resistance(real)
    seen = 0
    for bar in _bars(real):
        levels = st.support_resistance_levels(real, at=real.index[bar])  # by label
        row = frame.iloc[bar]
        supports = [lv for lv in levels if lv["kind"] == "support"]
        resistances = [lv for lv in levels if lv["kind"] == "resistance"]
        top = max(supports, key=lambda lv: lv["price"], default=None)
        bottom = min(resistances, key=lambda lv: lv["price"], default=None)
        np.testing.assert_equal(top["price"] if top else np.nan, row["support"])
        np.testing.assert_equal(top["strength"] if top else np.nan, row["support_strength"])
        np.testing.assert_equal(bottom["price"] if bottom else np.nan, row["resistance"])
        np.testing.assert_equal(bottom["strength"] if bottom else np.nan, row["resistance_strength"])
        seen += len(levels)
    assert seen > 0


def test_trendline_lines_agree_with_columns(real):
    frame = st.trendlines(real)
    seen = 0
    for bar in _bars(real):
        lines = st.trendline_lines(real, at=bar)
        row = frame.iloc[bar]
        supports = [ln["end_price"] for ln in lines if ln["kind"] == "support"]
        resistances = [ln["end_price"] for ln in lines if ln["kind"] == "resistance"]
        np.testing.assert_equal(_nan_or(supports, max), row["support_line"])
        np.testing.assert_equal(_nan_or(resistances, min), row["resistance_line"])
        for line in lines:
            assert line["end_at"] == real.index[bar]
            assert line["touches"] >= 2
        seen += len(lines)
    assert seen > 0


def test_supply_demand_zone_boxes_agree_with_columns(real):
    frame = st.supply_demand_zones(real)
    seen = 0
    for bar in range(len(real) - 400, len(real), 57):
        boxes = st.supply_demand_zone_boxes(real, at=bar)
        row = frame.iloc[bar]
        demand = max((b for b in boxes if b["kind"] == "demand"), key=lambda b: b["high"], default=None)
        supply = min((b for b in boxes if b["kind"] == "supply"), key=lambda b: b["low"], default=None)
        np.testing.assert_equal(demand["high"] if demand else np.nan, row["demand_high"])
        np.testing.assert_equal(demand["strength"] if demand else np.nan, row["demand_strength"])
        np.testing.assert_equal(supply["low"] if supply else np.nan, row["supply_low"])
        np.testing.assert_equal(supply["strength"] if supply else np.nan, row["supply_strength"])
        seen += len(boxes)
    assert seen > 0


def test_fibonacci_levels_agree_with_columns(real):
    frame = st.fibonacci(real)
    for bar in _bars(real):
        levels = st.fibonacci_levels(real, at=bar)
        assert len(levels) == 9
        for level in levels:
            assert level["price"] == frame[level["name"]].iloc[bar]
            assert level["direction"] == frame["swing_direction"].iloc[bar]


def test_confluence_levels_agree_with_columns(real):
    frame = st.confluence(real)
    seen = 0
    for bar in _bars(real):
        clusters = st.confluence_levels(real, at=bar)
        row = frame.iloc[bar]
        for side, pick in (("support", max), ("resistance", min)):
            mine = [c for c in clusters if c["side"] == side]
            best = pick(mine, key=lambda c: c["price"]) if mine else None
            np.testing.assert_equal(best["price"] if best else np.nan, row[f"confluence_{side}"])
            np.testing.assert_equal(best["score"] if best else np.nan, row[f"confluence_{side}_score"])
            if best:
                assert len(set(best["sources"])) == row[f"confluence_{side}_sources"] >= 2
        seen += len(clusters)
    assert seen > 0


def test_at_accepts_negative_positions_and_rejects_out_of_range():
    candles = _range_candles()

    assert st.support_resistance_levels(candles, at=-1) == st.support_resistance_levels(candles)
    with pytest.raises(IndexError):
        st.pivot_points(candles, at=len(candles))
