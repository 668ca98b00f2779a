"""EngineSettings: defaults, round trip, overrides, and refusals that name the field."""

import json

import pytest

from apps.backtests.engine import EngineSettings, InvalidSettingsError, run_backtest
from apps.backtests.engine import resolve_settings as resolve
from apps.common.errors import ValidationFailed
from tests.backtests.engine.support import Scripted, flat

DEFAULTS = {
    "cash": 10000.0,
    "fill": "next_open",
    "entry": "market",
    "limit_offset": 0.0,
    "allow_short": True,
    "timeframe": None,
    "costs": {
        "fee": 0.001,
        "maker_fee": None,
        "fee_fixed": 0.0,
        "slippage": "none",
        "slippage_bps": 0.0,
        "impact": 0.1,
    },
    "sizing": {
        "mode": "all_equity",
        "fraction": 1.0,
        "amount": 1000.0,
        "risk": 0.01,
        "atr_period": 14,
        "atr_multiple": 2.0,
        "kelly_cap": 0.25,
    },
    "exits": {
        "stop_loss": None,
        "take_profit": None,
        "trailing_stop": None,
        "breakeven_after": None,
        "time_exit_bars": None,
    },
    "instrument": {"lot_size": None, "min_notional": None, "tick_size": None},
}


def test_defaults_are_the_agreed_shape():
    assert EngineSettings().as_dict() == DEFAULTS
    assert EngineSettings.from_dict({}).as_dict() == DEFAULTS
    assert EngineSettings.from_dict(None) == EngineSettings()


def test_round_trip_and_json():
    data = {
        "cash": 2500,
        "fill": "close",
        "entry": "limit",
        "limit_offset": 0.003,
        "allow_short": False,
        "timeframe": "4h",
        "costs": {"fee": 0.0004, "maker_fee": -0.0001, "fee_fixed": 1, "slippage": "sqrt_impact", "impact": 0.2},
        "sizing": {"mode": "risk_per_trade", "risk": 0.02, "atr_period": 20, "atr_multiple": 3},
        "exits": {"stop_loss": 0.02, "take_profit": 0.05, "trailing_stop": 0.01, "breakeven_after": 0.01},
        "instrument": {"lot_size": 0.001, "min_notional": 10, "tick_size": 0.01},
    }
    settings = EngineSettings.from_dict(data)
    again = EngineSettings.from_dict(json.loads(json.dumps(settings.as_dict())))
    assert again == settings
    assert settings.costs.maker_rate == -0.0001 and settings.costs.taker_rate == 0.0004
    assert settings.sizing.atr_period == 20 and isinstance(settings.sizing.atr_period, int)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"cash": 0}, "settings.cash"),
        ({"cash": "lots"}, "settings.cash"),
        ({"cash": True}, "settings.cash"),
        ({"cash": float("nan")}, "settings.cash"),
        ({"fill": "tomorrow"}, "settings.fill"),
        ({"entry": "stop"}, "settings.entry"),
        ({"limit_offset": -0.1}, "settings.limit_offset"),
        ({"allow_short": "yes"}, "settings.allow_short"),
        ({"timeframe": "7m"}, "settings.timeframe"),
        ({"leverage": 3}, "settings.leverage"),
        ({"costs": {"fee": 0.9}}, "settings.costs.fee"),
        ({"costs": {"fee": None}}, "settings.costs.fee"),
        ({"costs": {"maker_fee": "x"}}, "settings.costs.maker_fee"),
        ({"costs": {"fee_fixed": -1}}, "settings.costs.fee_fixed"),
        ({"costs": {"slippage": "random"}}, "settings.costs.slippage"),
        ({"costs": {"slippage_bps": -3}}, "settings.costs.slippage_bps"),
        ({"costs": {"impact": 2}}, "settings.costs.impact"),
        ({"costs": {"commission": 1}}, "settings.costs.commission"),
        ({"costs": "cheap"}, "settings.costs"),
        ({"sizing": {"mode": "martingale"}}, "settings.sizing.mode"),
        ({"sizing": {"fraction": 0}}, "settings.sizing.fraction"),
        ({"sizing": {"fraction": 1.5}}, "settings.sizing.fraction"),
        ({"sizing": {"amount": -5}}, "settings.sizing.amount"),
        ({"sizing": {"risk": 0}}, "settings.sizing.risk"),
        ({"sizing": {"atr_period": 2.5}}, "settings.sizing.atr_period"),
        ({"sizing": {"atr_period": 0}}, "settings.sizing.atr_period"),
        ({"sizing": {"atr_multiple": 0}}, "settings.sizing.atr_multiple"),
        ({"sizing": {"kelly_cap": 1.2}}, "settings.sizing.kelly_cap"),
        ({"exits": {"stop_loss": 0}}, "settings.exits.stop_loss"),
        ({"exits": {"stop_loss": 1}}, "settings.exits.stop_loss"),
        ({"exits": {"take_profit": -0.1}}, "settings.exits.take_profit"),
        ({"exits": {"trailing_stop": 1.5}}, "settings.exits.trailing_stop"),
        ({"exits": {"breakeven_after": 0}}, "settings.exits.breakeven_after"),
        ({"exits": {"time_exit_bars": 0}}, "settings.exits.time_exit_bars"),
        ({"exits": {"time_exit_bars": "5"}}, "settings.exits.time_exit_bars"),
        ({"instrument": {"lot_size": 0}}, "settings.instrument.lot_size"),
        ({"instrument": {"min_notional": -1}}, "settings.instrument.min_notional"),
        ({"instrument": {"tick_size": 0}}, "settings.instrument.tick_size"),
        (["cash", 1], "settings"),
    ],
)
def test_invalid_settings_name_the_field(data, field):
    with pytest.raises(InvalidSettingsError) as caught:
        EngineSettings.from_dict(data)
    error = caught.value
    assert isinstance(error, ValidationFailed)
    assert error.code == "invalid_settings"
    assert list(error.extra["fields"]) == [field]
    assert error.field == field
    assert str(error).startswith(field)


@pytest.mark.parametrize("key", ["funding", "funding_rate", "borrow", "borrow_rate"])
def test_funding_and_borrow_are_refused_with_a_clear_message(key):
    with pytest.raises(InvalidSettingsError, match="not modelled") as caught:
        EngineSettings.from_dict({"costs": {key: 0.0001}})
    assert caught.value.field == f"settings.costs.{key}"


def test_nullable_settings_accept_null():
    settings = EngineSettings.from_dict({"exits": {"stop_loss": None}, "costs": {"maker_fee": None}, "timeframe": None})
    assert settings.exits.stop_loss is None and settings.costs.maker_rate == 0.001


def test_shortcuts_and_overrides():
    base = {"cash": 5000, "costs": {"fee": 0.002, "fee_fixed": 1.0}, "fill": "close"}
    # without shortcuts the settings stand
    assert resolve(base) == EngineSettings.from_dict(base)
    # shortcuts override; a section override keeps the section's other keys
    resolved = resolve(base, cash=100.0, fee=0.0005, fill="next_open", exits={"stop_loss": 0.01}, costs={"impact": 0.3})
    assert resolved.cash == 100.0 and resolved.fill == "next_open"
    assert resolved.costs.fee == 0.0005 and resolved.costs.fee_fixed == 1.0 and resolved.costs.impact == 0.3
    assert resolved.exits.stop_loss == 0.01
    with pytest.raises(InvalidSettingsError) as caught:
        resolve(None, fee=2.0)
    assert caught.value.field == "settings.costs.fee"


def test_run_backtest_validates_its_settings():
    with pytest.raises(InvalidSettingsError) as caught:
        run_backtest(Scripted(enter_long={0}), flat(3), sizing={"mode": "yolo"})
    assert caught.value.field == "settings.sizing.mode"
    result = run_backtest(Scripted(enter_long={0}), flat(3), settings={"cash": 123.0})
    assert result.settings.cash == 123.0 and result.metrics["final_equity"] == pytest.approx(
        123.0 - 123.0 / 1.001 * 0.001 * 2, rel=1e-9
    )
