"""The feature pipeline: catalogue, validation, naive references, and the two properties a
deployment relies on: no look-ahead (row t from candles <= t) and a tick's window of
``features_warmup`` bars giving the full history's values."""

import numpy as np
import pandas as pd
import pytest

from apps.ml.pipeline.errors import MLInputError
from apps.ml.pipeline.features import (
    DEFAULT_FEATURES,
    feature_catalogue,
    features_build,
    features_validate,
    features_warmup,
)
from tests.marketdata.ohlcv import load_candles

ALL = [entry["name"] for entry in feature_catalogue()]


def _equal_or_both_nan(a: np.ndarray, b: np.ndarray, tol: float) -> np.ndarray:
    both_nan = np.isnan(a) & np.isnan(b)
    close = np.abs(a - b) <= tol
    return both_nan | close


def test_catalogue_has_base_features_and_their_higher_timeframe_twins():
    catalogue = feature_catalogue()
    names = [entry["name"] for entry in catalogue]
    assert len(names) == len(set(names)) >= 30
    base = {e["name"] for e in catalogue if not e["higher"]}
    higher = [e for e in catalogue if e["higher"]]
    assert all(e["name"].startswith("htf_") and e["name"][4:] in base for e in higher)
    assert all(e["group"] == "Higher timeframe" for e in higher)
    assert {"ret_1", "ret_48", "vol_12", "vol_48", "rsi_14", "macd_line", "macd_hist", "bb_pctb", "bb_width"} <= base
    assert {"atr_pct", "volume_z", "dist_support", "dist_resistance", "hour_sin", "dow_cos"} <= base
    assert all(set(e) == {"name", "label", "group", "description", "higher"} for e in catalogue)
    assert set(DEFAULT_FEATURES) <= base


def test_validate_dedupes_and_keeps_order():
    assert features_validate(["rsi_14", "ret_1", "rsi_14"], timeframe="1h", higher_timeframe="") == ["rsi_14", "ret_1"]


@pytest.mark.parametrize(
    ("names", "timeframe", "higher", "field", "words"),
    [
        (["ret_1", "momentum_9000"], "1h", "", "features", "Unknown feature 'momentum_9000'"),
        ([], "1h", "", "features", "at least one feature"),
        (["htf_rsi_14"], "1h", "", "features", "needs a higher timeframe"),
        (["htf_hour_sin"], "1h", "4h", "features", "Unknown feature"),
        (["ret_1"], "7m", "", "timeframe", "Unknown timeframe '7m'"),
        (["ret_1"], "1h", "90m", "higher_timeframe", "Unknown higher timeframe"),
        (["ret_1"], "1h", "1h", "higher_timeframe", "2 to 24"),
        (["ret_1"], "4h", "6h", "higher_timeframe", "2 to 24"),
        (["ret_1"], "1m", "1h", "higher_timeframe", "2 to 24"),
        ("ret_1", "1h", "", "features", "list of feature names"),
    ],
)
def test_validate_refuses_bad_input_naming_the_field(names, timeframe, higher, field, words):
    with pytest.raises(MLInputError) as caught:
        features_validate(names, timeframe=timeframe, higher_timeframe=higher)
    assert caught.value.field == field
    assert words in caught.value.message
    assert caught.value.extra == {"fields": {field: [caught.value.message]}}
    assert caught.value.code == "ml_invalid"


def test_build_refuses_candles_without_a_column():
    candles = load_candles("BTC-USDT_1h").iloc[:100].drop(columns=["volume"])
    with pytest.raises(MLInputError) as caught:
        features_build(candles, ["ret_1"], timeframe="1h")
    assert caught.value.field == "candles"
    assert "volume" in caught.value.message


def test_features_equal_naive_references():
    candles = load_candles("BTC-USDT_1h").iloc[:600]
    names = ["ret_1", "ret_12", "vol_12", "volume_z", "bb_pctb", "bb_width", "hour_sin", "dow_cos"]
    X = features_build(candles, names, timeframe="1h")
    assert list(X.columns) == names and X.index.equals(candles.index)
    assert all(X[c].dtype == np.float64 for c in names)
    close = candles["close"].to_numpy()
    volume = candles["volume"].to_numpy()
    for t in (60, 200, 599):
        assert X["ret_1"].iloc[t] == pytest.approx(np.log(close[t] / close[t - 1]), abs=1e-12)
        assert X["ret_12"].iloc[t] == pytest.approx(np.log(close[t] / close[t - 12]), abs=1e-12)
        returns = [np.log(close[i] / close[i - 1]) for i in range(t - 11, t + 1)]
        assert X["vol_12"].iloc[t] == pytest.approx(np.std(returns, ddof=1), rel=1e-9)
        window = volume[t - 47 : t + 1]
        assert X["volume_z"].iloc[t] == pytest.approx((volume[t] - window.mean()) / window.std(), rel=1e-9)
        closes = close[t - 19 : t + 1]
        mid, sd = closes.mean(), closes.std()
        upper, lower = mid + 2 * sd, mid - 2 * sd
        assert X["bb_pctb"].iloc[t] == pytest.approx((close[t] - lower) / (upper - lower), rel=1e-7)
        assert X["bb_width"].iloc[t] == pytest.approx((upper - lower) / mid, rel=1e-7)
        stamp = candles.index[t]
        day = (stamp.hour * 3600 + stamp.minute * 60) / 86400
        week = (stamp.weekday() + day) / 7
        assert X["hour_sin"].iloc[t] == pytest.approx(np.sin(2 * np.pi * day), abs=1e-12)
        assert X["dow_cos"].iloc[t] == pytest.approx(np.cos(2 * np.pi * week), abs=1e-12)
    # Warm-up: a 12-bar return needs 13 bars, the 12-bar volatility 13, the z-score 48.
    assert X["ret_12"].iloc[:12].isna().all() and not np.isnan(X["ret_12"].iloc[12])
    assert X["vol_12"].iloc[:12].isna().all() and not np.isnan(X["vol_12"].iloc[12])
    assert X["volume_z"].iloc[:47].isna().all() and not np.isnan(X["volume_z"].iloc[47])


def test_constant_volume_gives_a_zero_z_score():
    candles = load_candles("EUR-USD_1h").iloc[:200]
    assert (candles["volume"] == 0).all()
    X = features_build(candles, ["volume_z"], timeframe="1h")
    assert (X["volume_z"].iloc[47:] == 0.0).all()


def test_features_are_scale_free():
    # The same market at 1000x the price (and 1/1000 the volume): the same features.
    candles = load_candles("BTC-USDT_1h").iloc[:1500]
    scaled = candles.copy()
    scaled[["open", "high", "low", "close"]] *= 1000.0
    names = [n for n in ALL if not n.startswith("htf_")]
    a = features_build(candles, names, timeframe="1h").to_numpy()
    b = features_build(scaled, names, timeframe="1h").to_numpy()
    assert _equal_or_both_nan(a, b, 1e-7).all()


def test_htf_features_use_only_closed_higher_bars():
    # On 1h candles a 4h bar opening at 00:00 closes at 04:00: its value is visible from the bar
    # opening at 04:00 on, and equals the feature computed on the 4h candles themselves.
    candles = load_candles("BTC-USDT_1h").iloc[:400]
    X = features_build(candles, ["htf_ret_1"], timeframe="1h", higher_timeframe="4h")
    four = candles.resample("4h", origin="epoch").agg({"close": "last"})
    expected_at = pd.Timestamp("2020-12-02 04:00", tz="UTC")
    last_closed = np.log(four["close"].loc["2020-12-02 00:00"] / four["close"].loc["2020-12-01 20:00"])
    assert X["htf_ret_1"].loc[expected_at] == pytest.approx(last_closed, abs=1e-12)
    for hour in ("05:00", "06:00", "07:00"):
        assert X["htf_ret_1"].loc[pd.Timestamp(f"2020-12-02 {hour}", tz="UTC")] == X["htf_ret_1"].loc[expected_at]
    before = np.log(four["close"].loc["2020-12-01 20:00"] / four["close"].loc["2020-12-01 16:00"])
    assert X["htf_ret_1"].loc[pd.Timestamp("2020-12-02 03:00", tz="UTC")] == pytest.approx(before, abs=1e-12)


@pytest.mark.parametrize(
    ("series", "bars", "timeframe", "higher"),
    [("BTC-USDT_5m", 9000, "5m", "1h"), ("EUR-USD_1h", 6000, "1h", "4h")],
)
def test_no_look_ahead_for_every_feature(series, bars, timeframe, higher):
    # given the full computation
    candles = load_candles(series).iloc[-bars:]
    full = features_build(candles, ALL, timeframe=timeframe, higher_timeframe=higher).to_numpy()
    rng = np.random.default_rng(7)
    cuts = sorted({*rng.integers(1, bars - 1, 25).tolist(), 0, 30, 299, bars - 2})
    for t in cuts:
        # when the candles end at t
        last = features_build(candles.iloc[: t + 1], ALL, timeframe=timeframe, higher_timeframe=higher).to_numpy()[-1]
        # then the last row is the full computation's row t, exactly (the same arithmetic)
        same = _equal_or_both_nan(last, full[t], 0.0)
        assert same.all(), (t, [ALL[i] for i in np.flatnonzero(~same)])


@pytest.mark.parametrize(
    ("series", "timeframe", "higher"),
    [("BTC-USDT_5m", "5m", "1h"), ("EUR-USD_1m", "1m", "15m"), ("SPY_1h", "1h", "4h")],
)
def test_a_window_of_warmup_bars_gives_the_full_history_values(series, timeframe, higher):
    # given the full history's features
    candles = load_candles(series).iloc[-30_000:]
    warmup = features_warmup(ALL, timeframe=timeframe, higher_timeframe=higher)
    full = features_build(candles, ALL, timeframe=timeframe, higher_timeframe=higher).to_numpy()
    rng = np.random.default_rng(11)
    checked = 0
    for t in rng.integers(warmup * 2, len(candles), 60):
        # when a tick sees only the newest `warmup` bars
        window = candles.iloc[t - warmup + 1 : t + 1]
        last = features_build(window, ALL, timeframe=timeframe, higher_timeframe=higher, start=warmup - 1)
        last_row = last.to_numpy()[-1]
        # then every feature equals the full history's at that bar, bit for bit
        same = _equal_or_both_nan(last_row, full[t], 0.0)
        assert same.all(), (t, {ALL[i]: (last_row[i], full[t][i]) for i in np.flatnonzero(~same)})
        # and every non-nullable feature is defined there
        required = [i for i, n in enumerate(ALL) if "dist_" not in n]
        assert not np.isnan(last_row[required]).any()
        checked += 1
    assert checked == 60


def test_warmup_is_modest_and_grows_with_the_higher_timeframe():
    base = features_warmup(["ret_1", "ret_48"], timeframe="1h")
    assert base == 49
    assert features_warmup(ALL[:21], timeframe="1h") == 250
    assert features_warmup(["htf_ret_1"], timeframe="1h", higher_timeframe="4h") == (2 + 1) * 4
    assert features_warmup(ALL, timeframe="1m", higher_timeframe="15m") <= 5000
