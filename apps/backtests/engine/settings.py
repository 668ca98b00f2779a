"""Engine settings: cash, fills, costs, sizing, exits and the instrument's trading rules.

:meth:`EngineSettings.from_dict` is the one way in from untrusted input (a form, the API, a
stored job): every key is optional, unknown keys are refused, and every refusal is an
:class:`InvalidSettingsError` naming the field as ``settings.<section>.<name>``.
:meth:`EngineSettings.as_dict` gives the complete dict back (``from_dict(s.as_dict()) == s``).

Funding and borrow costs are not modelled. They are the documented extension point of the
costs: a per-bar charge on the open position's notional would go into the fill loop's
mark-to-market step (:func:`apps.backtests.engine.fills.simulate`, where ``equity`` is written).
Until then the keys ``funding``, ``funding_rate``, ``borrow`` and ``borrow_rate`` under
``costs`` are refused with a message saying so, rather than silently ignored.
"""

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from apps.common.errors import ValidationFailed
from apps.marketdata.timeframes import TIMEFRAMES

FILLS = ("next_open", "close")
ENTRIES = ("market", "limit")
SLIPPAGE_MODELS = ("none", "fixed_bps", "volume_share", "sqrt_impact")
SIZING_MODES = ("all_equity", "fixed_fraction", "fixed_amount", "risk_per_trade", "kelly")
_NOT_MODELLED = ("funding", "funding_rate", "borrow", "borrow_rate")


class InvalidSettingsError(ValidationFailed):
    """A setting is unknown, of the wrong type or out of its range.

    ``field`` is its dotted path (``settings.costs.fee``); ``extra["fields"]`` maps it to the
    message, so forms and the API can point at it.
    """

    default_code = "invalid_settings"

    def __init__(self, reason: str, *, field: str):
        super().__init__(f"{field}: {reason}", extra={"fields": {field: [reason]}})
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class CostSettings:
    """Fees and slippage. ``fee`` is the taker rate (market and stop fills), ``maker_fee`` the
    rate of limit fills (None = ``fee``), ``fee_fixed`` a flat amount per fill in the quote
    currency. Slippage models (see :mod:`apps.backtests.engine.costs`): ``none``, ``fixed_bps``
    (``slippage_bps``), ``volume_share`` and ``sqrt_impact`` (coefficient ``impact``)."""

    fee: float = 0.001
    maker_fee: float | None = None
    fee_fixed: float = 0.0
    slippage: str = "none"
    slippage_bps: float = 0.0
    impact: float = 0.1

    @property
    def taker_rate(self) -> float:
        return self.fee

    @property
    def maker_rate(self) -> float:
        return self.fee if self.maker_fee is None else self.maker_fee


@dataclass(frozen=True)
class SizingSettings:
    """How much each entry buys or sells (see :mod:`apps.backtests.engine.sizing`)."""

    mode: str = "all_equity"
    fraction: float = 1.0
    amount: float = 1000.0
    risk: float = 0.01
    atr_period: int = 14
    atr_multiple: float = 2.0
    kelly_cap: float = 0.25


@dataclass(frozen=True)
class ExitSettings:
    """Exits the engine handles for every strategy. Fractions of the entry price (0.02 = 2 %);
    None = off. ``time_exit_bars`` closes a position held that many bars."""

    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    breakeven_after: float | None = None
    time_exit_bars: int | None = None


@dataclass(frozen=True)
class InstrumentSettings:
    """The venue's rules: sizes in whole ``lot_size`` units (rounded down), orders under
    ``min_notional`` (quote currency) skipped, order prices on the ``tick_size`` grid."""

    lot_size: float | None = None
    min_notional: float | None = None
    tick_size: float | None = None


@dataclass(frozen=True)
class EngineSettings:
    """Everything a backtest needs besides the strategy and the candles.

    ``fill``: ``next_open`` (orders from bar t's signals fill at bar t+1's open) or ``close``
    (at bar t's close). ``entry``: ``market`` or ``limit`` (a limit at close * (1 - limit_offset)
    for longs, * (1 + limit_offset) for shorts, valid for the next bar only). ``timeframe``
    names the bar size for annualising metrics (None = inferred from the candles' index).
    """

    cash: float = 10_000.0
    fill: str = "next_open"
    entry: str = "market"
    limit_offset: float = 0.0
    allow_short: bool = True
    timeframe: str | None = None
    costs: CostSettings = field(default_factory=CostSettings)
    sizing: SizingSettings = field(default_factory=SizingSettings)
    exits: ExitSettings = field(default_factory=ExitSettings)
    instrument: InstrumentSettings = field(default_factory=InstrumentSettings)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "EngineSettings":
        """Validate ``data`` (every key optional) into settings, or raise InvalidSettingsError."""
        data = _mapping(data, "settings")
        sections = {
            "costs": CostSettings,
            "sizing": SizingSettings,
            "exits": ExitSettings,
            "instrument": InstrumentSettings,
        }
        _refuse_unknown(data, {f.name for f in dataclasses.fields(cls)}, "settings")
        top: dict[str, Any] = {}
        for name, section_cls in sections.items():
            top[name] = _section(section_cls, data.get(name), f"settings.{name}")
        top["cash"] = _number(data, "cash", "settings", default=10_000.0, low=0.0, low_open=True, high=1e15)
        top["fill"] = _choice(data, "fill", "settings", FILLS, default="next_open")
        top["entry"] = _choice(data, "entry", "settings", ENTRIES, default="market")
        top["limit_offset"] = _number(data, "limit_offset", "settings", default=0.0, low=0.0, high=0.5)
        top["allow_short"] = _boolean(data, "allow_short", "settings", default=True)
        timeframe = data.get("timeframe")
        if timeframe is not None and timeframe not in TIMEFRAMES:
            raise InvalidSettingsError(f"must be one of {', '.join(TIMEFRAMES)}.", field="settings.timeframe")
        top["timeframe"] = timeframe
        return cls(**top)

    def as_dict(self) -> dict[str, Any]:
        """The complete settings as plain JSON-ready data (what the models store)."""
        return dataclasses.asdict(self)

    def merged(self, overrides: Mapping[str, Any]) -> "EngineSettings":
        """These settings with ``overrides`` applied (sections merged key by key), validated."""
        data = self.as_dict()
        for key, value in overrides.items():
            if isinstance(value, Mapping) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return EngineSettings.from_dict(data)


def _mapping(data: object, where: str) -> Mapping[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InvalidSettingsError("must be an object of settings.", field=where)
    return data


def _refuse_unknown(data: Mapping[str, Any], known: set[str], where: str) -> None:
    for key in data:
        if key in known:
            continue
        if where == "settings.costs" and key in _NOT_MODELLED:
            raise InvalidSettingsError(
                "funding and borrow costs are not modelled by the engine yet; remove this setting "
                "(fees and slippage are the costs applied).",
                field=f"{where}.{key}",
            )
        raise InvalidSettingsError(f"unknown setting; known: {', '.join(sorted(known))}.", field=f"{where}.{key}")


def _section(section_cls: type, raw: object, where: str) -> Any:
    data = _mapping(raw, where)
    fields = {f.name: f for f in dataclasses.fields(section_cls)}
    _refuse_unknown(data, set(fields), where)
    values = {name: _validate_field(section_cls, name, data, where) for name in fields}
    return section_cls(**values)


# Per section: name -> (kind, low, high, low_open, nullable). Ranges are inclusive unless low_open.
_RULES: dict[str, dict[str, tuple[str, float, float, bool, bool]]] = {
    "CostSettings": {
        "fee": ("num", -0.01, 0.5, False, False),
        "maker_fee": ("num", -0.01, 0.5, False, True),
        "fee_fixed": ("num", 0.0, 1e9, False, False),
        "slippage_bps": ("num", 0.0, 1000.0, False, False),
        "impact": ("num", 0.0, 0.5, False, False),
    },
    "SizingSettings": {
        "fraction": ("num", 0.0, 1.0, True, False),
        "amount": ("num", 0.0, 1e15, True, False),
        "risk": ("num", 0.0, 1.0, True, False),
        "atr_period": ("int", 1, 1000, False, False),
        "atr_multiple": ("num", 0.0, 100.0, True, False),
        "kelly_cap": ("num", 0.0, 1.0, True, False),
    },
    "ExitSettings": {
        "stop_loss": ("num", 0.0, 0.99, True, True),
        "take_profit": ("num", 0.0, 100.0, True, True),
        "trailing_stop": ("num", 0.0, 0.99, True, True),
        "breakeven_after": ("num", 0.0, 100.0, True, True),
        "time_exit_bars": ("int", 1, 10_000_000, False, True),
    },
    "InstrumentSettings": {
        "lot_size": ("num", 0.0, 1e12, True, True),
        "min_notional": ("num", 0.0, 1e15, False, True),
        "tick_size": ("num", 0.0, 1e12, True, True),
    },
}
_CHOICES = {("CostSettings", "slippage"): SLIPPAGE_MODELS, ("SizingSettings", "mode"): SIZING_MODES}


def _validate_field(section_cls: type, name: str, data: Mapping[str, Any], where: str) -> Any:
    default: Any = next(f.default for f in dataclasses.fields(section_cls) if f.name == name)
    choices = _CHOICES.get((section_cls.__name__, name))
    if choices is not None:
        return _choice(data, name, where, choices, default=default)
    kind, low, high, low_open, nullable = _RULES[section_cls.__name__][name]
    if name in data and data[name] is None:
        if nullable:
            return None
        raise InvalidSettingsError("is required (a number).", field=f"{where}.{name}")
    if kind == "int":
        return _integer(data, name, where, default=default, low=int(low), high=int(high))
    return _number(data, name, where, default=default, low=low, high=high, low_open=low_open)


def _number(
    data: Mapping[str, Any],
    name: str,
    where: str,
    *,
    default: float | None,
    low: float,
    high: float,
    low_open: bool = False,
) -> float | None:
    if name not in data:
        return default
    value = data[name]
    path = f"{where}.{name}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidSettingsError("must be a number.", field=path)
    number = float(value)
    if not math.isfinite(number):
        raise InvalidSettingsError("must be a finite number.", field=path)
    too_low = number <= low if low_open else number < low
    if too_low or number > high:
        bracket = "(" if low_open else "["
        raise InvalidSettingsError(f"must be in {bracket}{low:g}, {high:g}], got {number:g}.", field=path)
    return number


def _integer(data: Mapping[str, Any], name: str, where: str, *, default: int | None, low: int, high: int) -> int | None:
    if name not in data:
        return default
    value = data[name]
    path = f"{where}.{name}"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSettingsError("must be a whole number.", field=path)
    if not low <= value <= high:
        raise InvalidSettingsError(f"must be in [{low}, {high}], got {value}.", field=path)
    return value


def _choice(data: Mapping[str, Any], name: str, where: str, choices: tuple[str, ...], *, default: str) -> str:
    value = data.get(name, default)
    if value not in choices:
        raise InvalidSettingsError(f"must be one of {', '.join(choices)}; got {value!r}.", field=f"{where}.{name}")
    return str(value)


def _boolean(data: Mapping[str, Any], name: str, where: str, *, default: bool) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise InvalidSettingsError("must be true or false.", field=f"{where}.{name}")
    return value
