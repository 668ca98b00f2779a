"""Risk limits: what an account and a deployment may hold, as validated frozen dataclasses.

:meth:`AccountLimits.from_dict` / :meth:`DeploymentLimits.from_dict` are the one way in from
untrusted input (TradingAccount.risk_limits, Deployment.risk, a form, the API): every key is
optional, ``None`` (or a missing key) means "no limit", unknown keys are refused, and every
refusal is an :class:`InvalidLimitsError` naming the field (``risk.max_order_notional``), with
``extra["fields"]`` mapping it to the message like the engine's InvalidSettingsError.
:meth:`as_dict` gives JSON-ready data back (Decimals as strings; ``from_dict(as_dict())`` is
the identity).

Notional amounts are in the account's ``base_currency`` (the quote currency of its symbols).

Account limits (across every deployment and the manual position of the account):

- ``max_order_notional``: one order's value (quantity x decision price).
- ``max_position_notional``: any one position's |value| (a deployment's or the manual one).
- ``max_symbol_exposure``: the |value| of every position in one symbol plus the open orders
  that would add to it.
- ``max_exposure_notional``: the |value| of all positions plus all open orders that add to them.
- ``max_open_positions``: positions not flat (a pending entry on a flat symbol counts).
- ``max_orders_per_minute``: orders created in the last 60 seconds.

Deployment limits (the deployment's own positions and orders): ``max_order_notional``,
``max_position_notional`` (per symbol), ``max_exposure_notional`` (all its symbols),
``max_open_positions``, ``max_orders_per_minute``, and the loss limits checked after each tick
by :func:`apps.trades.risk.checks.deployment_loss_check`:

- ``daily_loss_limit``: a fraction (0.05 = 5 %) of the equity at the start of the UTC day; a
  loss that large pauses the deployment.
- ``daily_loss_amount``: the same as an amount of quote currency.
- ``max_drawdown``: a fraction of the peak equity; a drawdown that deep halts the deployment.
"""

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Self

from apps.common.errors import ValidationFailed

_MAX_AMOUNT = Decimal("1e15")


class InvalidLimitsError(ValidationFailed):
    """A limit is unknown, of the wrong type or out of its range. ``field`` is its dotted path."""

    default_code = "invalid_limits"

    def __init__(self, reason: str, *, field: str):
        super().__init__(f"{field}: {reason}", extra={"fields": {field: [reason]}})
        self.field = field
        self.reason = reason


def _amount(value: object, field: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise InvalidLimitsError("must be a number (an amount of the account's currency) or null.", field=field)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidLimitsError(
            "must be a number (an amount of the account's currency) or null.", field=field
        ) from None
    if not amount.is_finite() or amount <= 0:
        raise InvalidLimitsError("must be greater than 0 (null = no limit).", field=field)
    if amount > _MAX_AMOUNT:
        raise InvalidLimitsError(f"must be at most {_MAX_AMOUNT:.0e}.", field=field)
    return amount


def _count(value: object, field: str, *, high: int) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidLimitsError("must be a whole number or null.", field=field)
    if value < 1 or value > high:
        raise InvalidLimitsError(f"must be between 1 and {high} (null = no limit).", field=field)
    return value


def _fraction(value: object, field: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InvalidLimitsError("must be a fraction between 0 and 1, e.g. 0.05 for 5 %.", field=field) from None
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidLimitsError("must be a fraction between 0 and 1, e.g. 0.05 for 5 %.", field=field)
    if not 0 < value <= 1:
        raise InvalidLimitsError("must be greater than 0 and at most 1 (0.05 = 5 %; null = no limit).", field=field)
    return float(value)


class _Limits:
    _AMOUNTS: ClassVar[tuple[str, ...]] = ()
    _COUNTS: ClassVar[dict[str, int]] = {}
    _FRACTIONS: ClassVar[tuple[str, ...]] = ()
    WHERE: ClassVar[str] = "risk"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, where: str | None = None) -> Self:
        """Validate ``data`` (every key optional, None = no limit) or raise InvalidLimitsError."""
        where = where or cls.WHERE
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise InvalidLimitsError("must be an object of limits.", field=where)
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for key in data:
            if key not in known:
                raise InvalidLimitsError(f"unknown limit; known: {', '.join(sorted(known))}.", field=f"{where}.{key}")
        values: dict[str, Any] = {}
        for name in cls._AMOUNTS:
            values[name] = _amount(data.get(name), f"{where}.{name}")
        for name, high in cls._COUNTS.items():
            values[name] = _count(data.get(name), f"{where}.{name}", high=high)
        for name in cls._FRACTIONS:
            values[name] = _fraction(data.get(name), f"{where}.{name}")
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: amounts as strings, counts as ints, fractions as floats, None = no limit."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Decimal) else value
        return out

    @property
    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))  # type: ignore[arg-type]


@dataclass(frozen=True)
class AccountLimits(_Limits):
    """Account-wide limits (TradingAccount.risk_limits). See the module docstring."""

    max_order_notional: Decimal | None = None
    max_position_notional: Decimal | None = None
    max_symbol_exposure: Decimal | None = None
    max_exposure_notional: Decimal | None = None
    max_open_positions: int | None = None
    max_orders_per_minute: int | None = None

    _AMOUNTS: ClassVar[tuple[str, ...]] = (
        "max_order_notional",
        "max_position_notional",
        "max_symbol_exposure",
        "max_exposure_notional",
    )
    _COUNTS: ClassVar[dict[str, int]] = {"max_open_positions": 10_000, "max_orders_per_minute": 100_000}
    WHERE: ClassVar[str] = "risk_limits"


@dataclass(frozen=True)
class DeploymentLimits(_Limits):
    """A deployment's limits (Deployment.risk). See the module docstring."""

    max_order_notional: Decimal | None = None
    max_position_notional: Decimal | None = None
    max_exposure_notional: Decimal | None = None
    max_open_positions: int | None = None
    max_orders_per_minute: int | None = None
    daily_loss_limit: float | None = None
    daily_loss_amount: Decimal | None = None
    max_drawdown: float | None = None

    _AMOUNTS: ClassVar[tuple[str, ...]] = (
        "max_order_notional",
        "max_position_notional",
        "max_exposure_notional",
        "daily_loss_amount",
    )
    _COUNTS: ClassVar[dict[str, int]] = {"max_open_positions": 10_000, "max_orders_per_minute": 100_000}
    _FRACTIONS: ClassVar[tuple[str, ...]] = ("daily_loss_limit", "max_drawdown")
    WHERE: ClassVar[str] = "risk"


def account_limits(account: Any) -> AccountLimits:
    """The account's stored limits (validated when saved; a malformed value raises)."""
    return AccountLimits.from_dict(account.risk_limits or {})


def deployment_limits(deployment: Any) -> DeploymentLimits:
    return DeploymentLimits.from_dict(deployment.risk or {})
