"""Risk limits: validated from untrusted JSON, every refusal naming its field."""

from decimal import Decimal

import pytest

from apps.trades.risk.limits import AccountLimits, DeploymentLimits, InvalidLimitsError


def test_empty_means_no_limit_and_round_trips() -> None:
    limits = DeploymentLimits.from_dict({})
    assert limits.is_empty
    assert DeploymentLimits.from_dict(limits.as_dict()) == limits
    assert AccountLimits.from_dict(None) == AccountLimits()


def test_values_are_parsed_and_round_trip() -> None:
    data = {
        "max_order_notional": "1000",
        "max_position_notional": 5000,
        "max_exposure_notional": 20000.5,
        "max_open_positions": 3,
        "max_orders_per_minute": "10",
        "daily_loss_limit": 0.05,
        "daily_loss_amount": "250",
        "max_drawdown": "0.2",
    }
    limits = DeploymentLimits.from_dict(data)
    assert limits.max_order_notional == Decimal("1000")
    assert limits.max_exposure_notional == Decimal("20000.5")
    assert limits.max_orders_per_minute == 10
    assert limits.max_drawdown == 0.2
    assert DeploymentLimits.from_dict(limits.as_dict()) == limits
    assert limits.as_dict()["max_order_notional"] == "1000"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"max_order_notional": -1}, "risk.max_order_notional"),
        ({"max_order_notional": 0}, "risk.max_order_notional"),
        ({"max_position_notional": "lots"}, "risk.max_position_notional"),
        ({"max_position_notional": True}, "risk.max_position_notional"),
        ({"max_exposure_notional": "NaN"}, "risk.max_exposure_notional"),
        ({"max_exposure_notional": "1e30"}, "risk.max_exposure_notional"),
        ({"max_open_positions": 0}, "risk.max_open_positions"),
        ({"max_open_positions": 2.5}, "risk.max_open_positions"),
        ({"max_orders_per_minute": [1]}, "risk.max_orders_per_minute"),
        ({"daily_loss_limit": 1.5}, "risk.daily_loss_limit"),
        ({"daily_loss_limit": 0}, "risk.daily_loss_limit"),
        ({"max_drawdown": "half"}, "risk.max_drawdown"),
        ({"max_symbol_exposure": 10}, "risk.max_symbol_exposure"),
        ({"surprise": 1}, "risk.surprise"),
    ],
)
def test_deployment_refusals_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(InvalidLimitsError) as caught:
        DeploymentLimits.from_dict(data)
    assert caught.value.field == field
    assert field in caught.value.extra["fields"]
    assert caught.value.code == "invalid_limits"


def test_account_limits_name_their_own_prefix() -> None:
    with pytest.raises(InvalidLimitsError) as caught:
        AccountLimits.from_dict({"max_symbol_exposure": "-5"})
    assert caught.value.field == "risk_limits.max_symbol_exposure"
    with pytest.raises(InvalidLimitsError) as caught:
        AccountLimits.from_dict({"max_drawdown": 0.1})  # a deployment limit, not an account one
    assert caught.value.field == "risk_limits.max_drawdown"
    with pytest.raises(InvalidLimitsError):
        AccountLimits.from_dict(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_null_means_no_limit() -> None:
    assert AccountLimits.from_dict({"max_exposure_notional": None, "max_open_positions": ""}).is_empty
