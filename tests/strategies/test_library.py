"""Every pre-built strategy: registered, typed and bounded parameters, documented, trades on a real
year of candles, and does not peek (the look-ahead check on real candles). No database."""

import dataclasses
import json
import typing

import numpy as np
import pytest

from apps.strategies.base import Strategy
from apps.strategies.library.htf_trend_filter import MEMBER_KEYS
from apps.strategies.lookahead import lookahead_check
from apps.strategies.params import _spec
from apps.strategies.registry import strategy_class, strategy_classes
from tests.strategies.support import run, year_of

KEYS = (
    "sma_cross",
    "ema_cross",
    "rsi_mean_reversion",
    "macd_momentum",
    "bollinger_bounce",
    "donchian_breakout",
    "vwap_reversion",
    "opening_range_breakout",
    "trendline_bounce",
    "supply_demand_zone",
    "fibonacci_retracement",
    "dual_momentum",
    "multi_confluence",
    "composite",
    "htf_trend_filter",
)
# Intraday strategies need intraday candles with volume; the others get daily-ish crypto bars.
INTRADAY = {"opening_range_breakout", "vwap_reversion"}


def dataset_for(key: str) -> tuple[str, int]:
    return ("SPY_1h", 2019) if key in INTRADAY else ("BTC-USD_4h", 2021)


def with_shorts(cls: type[Strategy]) -> Strategy:
    names = {field.name for field in dataclasses.fields(cls.Params)}
    return cls({"short": True}) if "short" in names else cls()


def test_registry_holds_every_pre_built_strategy():
    assert set(KEYS) <= {cls.key for cls in strategy_classes()}


def test_htf_filter_can_wrap_every_other_library_strategy():
    others = {cls.key for cls in strategy_classes()} - {"htf_trend_filter"}
    assert set(MEMBER_KEYS) == others


@pytest.mark.parametrize("key", KEYS)
def test_every_numeric_parameter_is_bounded_and_every_text_one_has_choices(key):
    cls = strategy_class(key)
    hints = typing.get_type_hints(cls.Params)
    for field in dataclasses.fields(cls.Params):
        spec = _spec(field)
        kind = hints[field.name]
        assert spec.help, f"{key}.{field.name} has no help text"
        if kind in (int, float) and spec.choices is None:
            assert spec.low is not None and spec.high is not None, f"{key}.{field.name} is unbounded"
            assert isinstance(field.default, int | float)
            assert spec.low <= field.default <= spec.high
        elif kind is str:
            assert spec.choices and field.default in spec.choices, f"{key}.{field.name} has no choices"


@pytest.mark.parametrize("key", KEYS)
def test_docstring_documents_the_rules_and_every_parameter(key):
    cls = strategy_class(key)
    doc = " ".join(cls.documentation().split())  # docstrings wrap anywhere
    for section in ("**Entry", "**Exit", "**Parameters:**", "**When it works:**", "**When it does not"):
        assert section in doc, f"{key} documentation lacks {section}"
    for field in dataclasses.fields(cls.Params):
        if field.name == "short" or field.name.startswith("weight_"):
            assert "*short*" in doc or field.name.startswith("weight_")
            continue
        assert f"*{field.name}*" in doc, f"{key} documentation does not explain {field.name}"
    assert cls.name, f"{key} has no display name"


@pytest.mark.parametrize("key", KEYS)
def test_default_strategy_enters_on_a_real_year_of_candles(key):
    # given
    name, year = dataset_for(key)
    candles = year_of(name, year)
    strategy = strategy_class(key)()

    # when
    out = run(strategy, candles)

    # then: it trades, long side first (every strategy is long-only by default)
    assert out["enter_long"].sum() >= 1
    assert out["exit_long"].sum() >= 1
    assert not out["enter_short"].any(), "shorts must be off by default"
    assert isinstance(strategy.warmup(), int) and strategy.warmup() >= 0


@pytest.mark.parametrize("key", [key for key in KEYS if "short" in strategy_class(key).Params.__dataclass_fields__])
def test_short_side_trades_when_enabled(key):
    name, year = dataset_for(key)
    out = run(strategy_class(key)({"short": True}), year_of(name, year))
    assert out["enter_short"].sum() >= 1
    assert out["exit_short"].sum() >= 1


@pytest.mark.parametrize("key", KEYS)
def test_no_pre_built_strategy_peeks(key):
    # given: real candles, both sides enabled where the strategy has them
    name, year = dataset_for(key)
    candles = year_of(name, year)
    strategy = with_shorts(strategy_class(key))

    # when
    report = lookahead_check(strategy, candles)

    # then
    assert report.checked >= 16, report.message
    assert not report.is_biased, report.message
    json.dumps(report.as_dict())


@pytest.mark.parametrize("key", KEYS)
def test_stop_and_target_prices_appear_only_on_entry_bars(key):
    name, year = dataset_for(key)
    out = run(with_shorts(strategy_class(key)), year_of(name, year))
    entered = (out["enter_long"] | out["enter_short"]).to_numpy()
    for column in ("stop_price", "target_price"):
        priced = ~np.isnan(out[column].to_numpy())
        assert not (priced & ~entered).any(), f"{key}: {column} set on a bar without an entry"
