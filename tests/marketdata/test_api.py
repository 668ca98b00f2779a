"""The market-data API: instruments, candle windows with indicators, structure objects."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rest_framework.test import APIClient

from apps.marketdata import chart_indicators
from apps.marketdata import indicators as ta
from apps.marketdata.demo import random_walk
from apps.marketdata.indicators import structure
from apps.marketdata.models import Instrument
from apps.marketdata.services import instrument_get_or_create
from apps.marketdata.storage import candles_frame, candles_write
from apps.users.models import ApiToken

pytestmark = pytest.mark.django_db

BARS = 1500
END = datetime(2024, 3, 1, tzinfo=UTC)


def _candles(bars: int = BARS, timeframe: str = "1h", seed: int = 7) -> pd.DataFrame:
    return random_walk(bars=bars, timeframe=timeframe, start_price=100.0, annual_vol=0.5, tick=0.01, seed=seed, end=END)


@pytest.fixture
def btc() -> Instrument:
    instrument = instrument_get_or_create(
        venue="binance",
        symbol="BTC/USDT",
        tick_size=Decimal("0.01"),
        lot_size=Decimal("0.00001"),
        min_notional=Decimal("5"),
    )
    candles_write(instrument=instrument, timeframe="1h", frame=_candles(), source="import")
    candles_write(instrument=instrument, timeframe="1d", frame=_candles(60, "1d", seed=3), source="import")
    return instrument


@pytest.fixture
def client(alice: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(alice)
    return client


def _url(instrument: Instrument | int, what: str = "") -> str:
    pk = instrument if isinstance(instrument, int) else instrument.pk
    return f"/api/v1/instruments/{pk}/{what + '/' if what else ''}"


def _frame(btc: Instrument) -> pd.DataFrame:
    return candles_frame(btc, "1h")


def _epoch(ts: pd.Timestamp) -> int:
    return int(ts.timestamp())


# --- authentication and scope --------------------------------------------------------------------


@pytest.mark.parametrize("what", ["", "detail", "candles", "structure"])
def test_market_endpoints_are_401_without_authentication(btc, api_client, what):
    url = "/api/v1/instruments/" if what == "" else _url(btc, "" if what == "detail" else what)
    response = api_client.get(url, {"timeframe": "1h"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_candles_work_with_an_api_token(btc, alice, api_client):
    _, plaintext = ApiToken.objects.create(user=alice, name="bot")
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")
    response = api_client.get(_url(btc, "candles"), {"timeframe": "1h", "limit": 5})
    assert response.status_code == 200
    assert response.json()["count"] == 5


def test_market_data_is_the_same_for_everyone_and_read_only(btc, client, mallory):
    # Candles are public market data: mallory sees what alice sees and can change nothing.
    outsider = APIClient()
    outsider.force_authenticate(mallory)
    url = _url(btc, "candles")
    assert outsider.get(url, {"timeframe": "1h"}).json() == client.get(url, {"timeframe": "1h"}).json()
    for method in ("post", "put", "patch", "delete"):
        assert getattr(outsider, method)(url, {}).status_code == 405
        assert getattr(outsider, method)("/api/v1/instruments/", {}).status_code == 405


# --- instruments ---------------------------------------------------------------------------------


def test_instrument_list_shape_and_pagination(btc, client, django_assert_max_num_queries):
    for n in range(3):
        instrument_get_or_create(venue="demo", symbol=f"SYM{n}", asset_class=Instrument.AssetClass.EQUITY)
    with django_assert_max_num_queries(4):
        response = client.get("/api/v1/instruments/", {"limit": 2})
    body = response.json()
    assert response.status_code == 200
    assert body["count"] == 4
    assert len(body["results"]) == 2
    assert body["next"]
    first = body["results"][0]
    assert first == {
        "id": btc.pk,
        "venue": "binance",
        "symbol": "BTC/USDT",
        "asset_class": "crypto",
        "base": "BTC",
        "quote": "USDT",
        "tick_size": "0.0100000000",
        "lot_size": "0.0000100000",
        "min_notional": "5.0000000000",
        "is_active": True,
        "is_synthetic": False,
        "timeframes": ["1h", "1d"],
    }


@pytest.mark.parametrize(
    ("params", "symbols"),
    [
        ({"venue": "binance"}, ["BTC/USDT"]),
        ({"venue": "DEMO"}, ["EUR/USD", "SPY"]),
        ({"asset_class": "forex"}, ["EUR/USD"]),
        ({"search": "usd"}, ["BTC/USDT", "EUR/USD"]),
        ({"search": "spy"}, ["SPY"]),
        ({}, ["BTC/USDT", "EUR/USD", "SPY"]),
    ],
)
def test_instrument_list_filters(btc, client, params, symbols):
    instrument_get_or_create(venue="demo", symbol="SPY", asset_class=Instrument.AssetClass.ETF)
    instrument_get_or_create(venue="demo", symbol="EUR/USD", asset_class=Instrument.AssetClass.FOREX)
    instrument_get_or_create(venue="demo", symbol="OLD", is_active=False)
    response = client.get("/api/v1/instruments/", params)
    assert [r["symbol"] for r in response.json()["results"]] == symbols


def test_instrument_list_unknown_asset_class_is_400(client):
    response = client.get("/api/v1/instruments/", {"asset_class": "tulips"})
    assert response.status_code == 400
    assert "asset_class" in response.json()["error"]["fields"]


def test_instrument_detail_lists_stored_series(btc, client):
    response = client.get(_url(btc))
    body = response.json()
    assert response.status_code == 200
    assert body["timeframes"] == ["1h", "1d"]
    hourly = body["series"][0]
    frame = _frame(btc)
    assert hourly["timeframe"] == "1h"
    assert hourly["count"] == BARS
    assert hourly["first_ts"] == frame.index[0].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert hourly["last_ts"] == frame.index[-1].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert hourly["source"] == "import"


@pytest.mark.parametrize("what", ["", "candles", "structure"])
def test_unknown_instrument_is_404(client, what):
    response = client.get(_url(987654, what), {"timeframe": "1h"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- candles -------------------------------------------------------------------------------------


def test_candles_default_to_the_newest_bars(btc, client):
    response = client.get(_url(btc, "candles"), {"timeframe": "1h", "limit": 3})
    body = response.json()
    frame = _frame(btc).iloc[-3:]
    assert response.status_code == 200
    assert body["instrument"] == {"id": btc.pk, "venue": "binance", "symbol": "BTC/USDT", "is_synthetic": False}
    assert body["timeframe"] == "1h"
    assert body["count"] == 3
    assert body["has_older"] is True
    assert body["has_newer"] is False
    assert body["indicators"] == {}
    assert body["candles"] == [
        {"t": _epoch(ts), "o": row.open, "h": row.high, "l": row.low, "c": row.close, "v": row.volume}
        for ts, row in frame.iterrows()
    ]


def test_candles_limit_defaults_to_1000(btc, client):
    body = client.get(_url(btc, "candles"), {"timeframe": "1h"}).json()
    assert body["count"] == 1000
    assert body["candles"][-1]["t"] == _epoch(_frame(btc).index[-1])


def test_candles_from_start_are_the_oldest_from_there_and_end_is_exclusive(btc, client):
    frame = _frame(btc)
    start, end = frame.index[100], frame.index[110]
    # given: start as ISO, end as epoch seconds
    body = client.get(
        _url(btc, "candles"), {"timeframe": "1h", "start": start.isoformat(), "end": str(_epoch(end)), "limit": 5}
    ).json()
    assert [c["t"] for c in body["candles"]] == [_epoch(ts) for ts in frame.index[100:105]]
    assert body["has_older"] is True
    assert body["has_newer"] is True
    body = client.get(_url(btc, "candles"), {"timeframe": "1h", "start": _epoch(start), "end": _epoch(end)}).json()
    assert [c["t"] for c in body["candles"]] == [_epoch(ts) for ts in frame.index[100:110]]
    assert body["has_newer"] is True  # bars at and after `end` exist


def test_candles_accept_epoch_milliseconds_and_dates(btc, client):
    frame = _frame(btc)
    ms = client.get(_url(btc, "candles"), {"timeframe": "1h", "start": _epoch(frame.index[5]) * 1000, "limit": 1})
    assert ms.json()["candles"][0]["t"] == _epoch(frame.index[5])
    day = frame.index[48].normalize()
    by_date = client.get(_url(btc, "candles"), {"timeframe": "1h", "start": day.strftime("%Y-%m-%d"), "limit": 1})
    assert by_date.json()["candles"][0]["t"] == _epoch(day)


def test_candles_of_a_timeframe_not_stored_are_empty(btc, client):
    body = client.get(_url(btc, "candles"), {"timeframe": "4h", "indicators": "sma:20"}).json()
    assert body["candles"] == []
    assert body["count"] == 0
    assert body["indicators"]["sma:20"]["series"] == {}


def test_candles_with_limit_5000_are_bounded_to_what_exists(btc, client):
    body = client.get(_url(btc, "candles"), {"timeframe": "1h", "limit": 5000}).json()
    assert body["count"] == BARS
    assert body["has_older"] is False


# --- indicators ----------------------------------------------------------------------------------

# Per spec: the library call on a frame, and its result as {column: Series}.
LIBRARY = {
    "sma:20": lambda f: {"value": ta.sma(f["close"], 20)},
    "wma:10": lambda f: {"value": ta.wma(f["close"], 10)},
    "bbands:20:2": lambda f: dict(ta.bbands(f["close"], 20, 2.0).items()),
    "donchian:20": lambda f: dict(ta.donchian(f["high"], f["low"], 20).items()),
    "cci:20": lambda f: {"value": ta.cci(f["high"], f["low"], f["close"], 20)},
    "stoch:14:3:3": lambda f: dict(ta.stoch(f["high"], f["low"], f["close"], 14, 3, 3).items()),
    "mfi:14": lambda f: {"value": ta.mfi(f["high"], f["low"], f["close"], f["volume"], 14)},
    "willr:14": lambda f: {"value": ta.willr(f["high"], f["low"], f["close"], 14)},
    "vwap:D": lambda f: {"value": ta.vwap(f["high"], f["low"], f["close"], f["volume"], "D")},
    "ema:50": lambda f: {"value": ta.ema(f["close"], 50)},
    "rsi:14": lambda f: {"value": ta.rsi(f["close"], 14)},
    "macd:12:26:9": lambda f: dict(ta.macd(f["close"], 12, 26, 9).items()),
    "atr:14": lambda f: {"value": ta.atr(f["high"], f["low"], f["close"], 14)},
    "adx:14": lambda f: {"value": ta.adx(f["high"], f["low"], f["close"], 14)},
    "keltner:20:10:2": lambda f: dict(ta.keltner(f["high"], f["low"], f["close"], 20, 10, 2.0).items()),
    "supertrend:10:3": lambda f: dict(ta.supertrend(f["high"], f["low"], f["close"], 10, 3.0).items()),
    "obv": lambda f: {"value": ta.obv(f["close"], f["volume"])},
}
WINDOWED = ["sma:20", "wma:10", "bbands:20:2", "donchian:20", "cci:20", "stoch:14:3:3", "mfi:14", "willr:14", "vwap:D"]
RECURSIVE = ["ema:50", "rsi:14", "macd:12:26:9", "atr:14", "adx:14", "keltner:20:10:2", "supertrend:10:3"]


def _as_array(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _window_request(client: APIClient, btc: Instrument, specs: list[str], first: int, count: int) -> dict[str, Any]:
    start = _frame(btc).index[first]
    response = client.get(
        _url(btc, "candles"),
        {"timeframe": "1h", "start": start.isoformat(), "limit": count, "indicators": ",".join(specs)},
    )
    assert response.status_code == 200, response.json()
    return response.json()


@pytest.mark.parametrize("spec", WINDOWED + RECURSIVE + ["obv"])
def test_indicator_equals_the_library_on_warmup_plus_window(btc, client, spec):
    # given: a window starting at bar 1200 of 1500
    first, count = 1200, 200
    body = _window_request(client, btc, [spec], first, count)
    parsed = chart_indicators.parse_one(spec)
    warmup = min(first, parsed.warmup(3600))
    loaded = _frame(btc).iloc[first - warmup : first + count]
    expected = LIBRARY[spec](loaded)
    result = body["indicators"][spec]
    assert result["name"] == parsed.definition.key
    assert set(result["series"]) == set(expected)
    for column, series in expected.items():
        np.testing.assert_array_equal(_as_array(result["series"][column]), series.iloc[-count:].to_numpy())


@pytest.mark.parametrize("spec", WINDOWED)
def test_windowed_indicator_at_window_start_equals_whole_history(btc, client, spec):
    first, count = 1200, 50
    body = _window_request(client, btc, [spec], first, count)
    whole = LIBRARY[spec](_frame(btc))
    for column, series in whole.items():
        got = _as_array(body["indicators"][spec]["series"][column])
        assert not np.isnan(got[0]), f"{spec} {column} is null at the first bar: warm-up missing"
        np.testing.assert_allclose(got, series.iloc[first : first + count].to_numpy(), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("spec", RECURSIVE)
def test_recursive_indicator_at_window_start_converges_to_whole_history(btc, client, spec):
    first, count = 1200, 50
    body = _window_request(client, btc, [spec], first, count)
    whole = LIBRARY[spec](_frame(btc))
    for column, series in whole.items():
        got = _as_array(body["indicators"][spec]["series"][column])
        assert not np.isnan(got[0])
        np.testing.assert_allclose(got, series.iloc[first : first + count].to_numpy(), rtol=1e-6, atol=1e-6)


def test_indicator_values_during_warmup_are_null(btc, client):
    body = _window_request(client, btc, ["sma:20", "macd:12:26:9"], 0, 40)
    sma = body["indicators"]["sma:20"]["series"]["value"]
    assert sma[:19] == [None] * 19
    assert sma[19] == pytest.approx(float(_frame(btc)["close"].iloc[:20].mean()))
    assert body["indicators"]["macd:12:26:9"]["series"]["macd"][:33] == [None] * 33


def test_indicator_defaults_and_metadata(btc, client):
    body = client.get(_url(btc, "candles"), {"timeframe": "1h", "limit": 10, "indicators": "rsi, bbands"}).json()
    assert body["indicators"]["rsi"]["params"] == {"n": 14}
    assert body["indicators"]["rsi"]["pane"] == "own"
    assert body["indicators"]["bbands"]["params"] == {"n": 20, "k": 2.0}
    assert body["indicators"]["bbands"]["pane"] == "price"
    assert list(body["indicators"]["bbands"]["series"]) == ["upper", "middle", "lower"]
    assert all(len(v) == 10 for v in body["indicators"]["bbands"]["series"].values())


def test_ichimoku_is_returned_as_charts_draw_it(btc, client):
    body = client.get(_url(btc, "candles"), {"timeframe": "1h", "limit": 100, "indicators": "ichimoku"}).json()
    frame = _frame(btc)
    raw = ta.ichimoku(frame["high"], frame["low"], frame["close"])
    series = body["indicators"]["ichimoku"]["series"]
    np.testing.assert_allclose(_as_array(series["senkou_a"]), raw["senkou_a"].shift(26).iloc[-100:].to_numpy())
    np.testing.assert_allclose(_as_array(series["chikou"])[:74], frame["close"].iloc[-74:].to_numpy())
    assert series["chikou"][74:] == [None] * 26


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "timeframe"),
        ({"timeframe": "7m"}, "timeframe"),
        ({"timeframe": "1h", "indicators": "foo:3"}, "indicators"),
        ({"timeframe": "1h", "indicators": "sma:20:5"}, "indicators"),
        ({"timeframe": "1h", "indicators": "obv:3"}, "indicators"),
        ({"timeframe": "1h", "indicators": "sma:x"}, "indicators"),
        ({"timeframe": "1h", "indicators": "sma:0"}, "indicators"),
        ({"timeframe": "1h", "indicators": "bbands:20:nan"}, "indicators"),
        ({"timeframe": "1h", "indicators": "macd:26:12:9"}, "indicators"),
        ({"timeframe": "1h", "indicators": "vwap:Q"}, "indicators"),
        ({"timeframe": "1h", "indicators": ",".join([f"sma:{n}" for n in range(2, 20)])}, "indicators"),
        ({"timeframe": "1h", "start": "2024-02-02", "end": "2024-02-01"}, "start"),
        ({"timeframe": "1h", "start": "2024-02-01", "end": "2024-02-01"}, "start"),
        ({"timeframe": "1h", "start": "last tuesday"}, "start"),
        ({"timeframe": "1h", "end": "2024-13-45"}, "end"),
        ({"timeframe": "1h", "end": "1e400"}, "end"),
        ({"timeframe": "1h", "limit": 0}, "limit"),
        ({"timeframe": "1h", "limit": 5001}, "limit"),
        ({"timeframe": "1h", "limit": "many"}, "limit"),
    ],
)
def test_candles_bad_input_is_400_naming_the_field(btc, client, params, field):
    response = client.get(_url(btc, "candles"), params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == [field]
    assert error["message"].startswith(f"{field}: ")


# --- structure -----------------------------------------------------------------------------------

LISTERS = {
    "sr": structure.support_resistance_levels,
    "trendlines": structure.trendline_lines,
    "zones": structure.supply_demand_zone_boxes,
    "fib": structure.fibonacci_levels,
    "pivots": structure.pivot_points,
    "confluence": structure.confluence_levels,
}


def _jsonish(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def value(v: Any) -> Any:
        if isinstance(v, pd.Timestamp):
            return _epoch(v)
        if isinstance(v, float) and np.isnan(v):
            return None
        if isinstance(v, list):
            return [value(x) for x in v]
        if isinstance(v, dict):
            return {k: value(x) for k, x in v.items()}
        return v.item() if hasattr(v, "item") else v

    return [value(item) for item in items]


def test_structure_defaults_to_the_four_chart_layers_on_the_newest_1000_bars(btc, client):
    response = client.get(_url(btc, "structure"), {"timeframe": "1h"})
    body = response.json()
    window = _frame(btc).iloc[-1000:]
    assert response.status_code == 200
    assert set(body) == {"instrument", "timeframe", "at", "bars", "start", "sr", "trendlines", "zones", "fib"}
    assert body["at"] == _epoch(window.index[-1])
    assert body["start"] == _epoch(window.index[0])
    assert body["bars"] == 1000
    for kind in ("sr", "trendlines", "zones", "fib"):
        assert body[kind] == _jsonish(LISTERS[kind](window)), kind


def test_structure_as_of_a_past_bar(btc, client):
    frame = _frame(btc)
    at = frame.index[700]
    body = client.get(
        _url(btc, "structure"),
        {"timeframe": "1h", "kinds": "pivots,confluence,sr", "at": _epoch(at) + 60, "bars": 300},
    ).json()
    window = frame.iloc[401:701]
    assert body["at"] == _epoch(at)
    assert body["bars"] == 300
    assert set(body) >= {"pivots", "confluence", "sr"}
    assert "fib" not in body
    for kind in ("pivots", "confluence", "sr"):
        assert body[kind] == _jsonish(LISTERS[kind](window)), kind


def test_structure_of_an_empty_series_is_empty(btc, client):
    body = client.get(_url(btc, "structure"), {"timeframe": "4h"}).json()
    assert body["at"] is None
    assert body["sr"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "timeframe"),
        ({"timeframe": "9h"}, "timeframe"),
        ({"timeframe": "1h", "kinds": "sr,ley_lines"}, "kinds"),
        ({"timeframe": "1h", "kinds": ","}, "kinds"),
        ({"timeframe": "1h", "at": "soon"}, "at"),
        ({"timeframe": "1h", "bars": 10}, "bars"),
        ({"timeframe": "1h", "bars": 5001}, "bars"),
    ],
)
def test_structure_bad_input_is_400_naming_the_field(btc, client, params, field):
    response = client.get(_url(btc, "structure"), params)
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


# --- schema --------------------------------------------------------------------------------------


def test_schema_describes_the_market_endpoints(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    candles = paths["/api/v1/instruments/{instrument_id}/candles/"]["get"]
    names = {p["name"] for p in candles["parameters"]}
    assert {"timeframe", "start", "end", "limit", "indicators"} <= names
    schema_ref = candles["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert schema_ref.endswith("/CandlesResponse")
    listing = paths["/api/v1/instruments/"]["get"]
    assert {"venue", "asset_class", "search", "limit", "offset"} <= {p["name"] for p in listing["parameters"]}
    structure_params = {p["name"] for p in paths["/api/v1/instruments/{instrument_id}/structure/"]["get"]["parameters"]}
    assert {"timeframe", "kinds", "at", "bars"} <= structure_params


def test_structure_at_the_end_of_time_means_the_newest_bar(btc, client):
    newest = client.get(_url(btc, "structure"), {"timeframe": "1h", "kinds": "fib"}).json()

    response = client.get(
        _url(btc, "structure"), {"timeframe": "1h", "kinds": "fib", "at": "9999-12-31T23:59:59.999999"}
    )

    assert response.status_code == 200
    assert response.json() == newest
