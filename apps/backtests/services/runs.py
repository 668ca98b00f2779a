"""Validating what to run, shared by backtests, optimisations and walk-forwards: the strategy with
its params (or the user's rule set), the instrument, the timeframe, the range (which must hold
candles), and the engine settings. Nothing is queued until all of it passes.

Errors are ApplicationErrors whose ``fields`` name the input as the API and the forms call it:
``strategy``, ``params.<name>``, ``rule_set``, ``rules.<path>``, ``instrument``, ``timeframe``,
``start``, ``end``, ``settings.<path>``.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from apps.backtests.engine import EngineSettings
from apps.common.errors import ValidationFailed
from apps.marketdata import timeframes
from apps.marketdata.models import Candle, Instrument
from apps.strategies.base import Strategy
from apps.strategies.models import RuleSet
from apps.strategies.rules import RuleStrategy, check_timeframes
from apps.strategies.services import RULES_KEY, strategy_build
from apps.users.models import User


class RunInputError(ValidationFailed):
    default_code = "invalid"

    def __init__(self, message: str, *, field: str):
        super().__init__(message, extra={"fields": {field: [message]}})
        self.field = field


@dataclass(frozen=True)
class RunSpec:
    """A validated run: everything a job row stores about what it runs."""

    strategy: Strategy
    strategy_key: str
    params: dict[str, Any]
    rule_set: RuleSet | None
    rules: dict[str, Any] | None
    instrument: Instrument
    timeframe: str
    start_at: datetime | None
    end_at: datetime | None
    settings: dict[str, Any]

    def fields(self) -> dict[str, Any]:
        return {
            "strategy_key": self.strategy_key,
            "params": self.params,
            "rule_set": self.rule_set,
            "rules": self.rules,
            "instrument": self.instrument,
            "timeframe": self.timeframe,
            "start_at": self.start_at,
            "end_at": self.end_at,
            "settings": self.settings,
        }


def _int_id(value: Any, field: str, what: str) -> int:
    if isinstance(value, bool):
        raise RunInputError(f"Choose {what}.", field=field)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise RunInputError(f"Choose {what}.", field=field) from None


def _rule_set(owner: User, rule_set_id: Any) -> RuleSet:
    pk = _int_id(rule_set_id, "rule_set", "a rule set")
    rule_set = RuleSet.objects.filter(owner=owner, pk=pk).first()
    if rule_set is None:
        # The same answer whether it does not exist or belongs to someone else.
        raise RunInputError("No such rule set.", field="rule_set")
    return rule_set


def _instrument(instrument_id: Any) -> Instrument:
    pk = _int_id(instrument_id, "instrument", "an instrument")
    instrument = Instrument.objects.filter(pk=pk).first()
    if instrument is None:
        raise RunInputError("No such instrument.", field="instrument")
    return instrument


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise RunInputError("Give a date and time (UTC).", field=field)
    return value.replace(tzinfo=UTC) if timezone.is_naive(value) else value.astimezone(UTC)


def _range(instrument: Instrument, timeframe: str, start_at: datetime | None, end_at: datetime | None) -> None:
    """The range must hold at least one bar (one indexed EXISTS, no load)."""
    if start_at is not None and end_at is not None and start_at >= end_at:
        raise RunInputError("The start must be before the end.", field="start")
    bars = Candle.objects.filter(instrument_id=instrument.pk, timeframe=timeframe)
    in_range = bars
    if start_at is not None:
        in_range = in_range.filter(ts__gte=start_at)
    if end_at is not None:
        in_range = in_range.filter(ts__lt=end_at)
    if in_range.exists():
        return
    if (start_at is None and end_at is None) or not bars.exists():
        raise RunInputError(f"No {timeframe} candles are stored for {instrument}.", field="timeframe")
    span = f"{start_at:%Y-%m-%d %H:%M}" if start_at else "the first bar"
    span += f" and {end_at:%Y-%m-%d %H:%M} UTC" if end_at else " and the last bar"
    raise RunInputError(f"No {timeframe} candles of {instrument} between {span}.", field="start")


def engine_settings_clean(
    settings: Mapping[str, Any] | None, *, timeframe: str, instrument: Instrument | None = None
) -> dict[str, Any]:
    """``EngineSettings.from_dict`` (InvalidSettingsError names ``settings.<path>``), with what
    the settings leave open filled in from the run: the timeframe, and the instrument's lot
    size, minimum notional and tick size. Returns ``as_dict()``."""
    if settings is not None and not isinstance(settings, Mapping):
        raise RunInputError("Settings must be an object.", field="settings")
    data = dict(settings or {})
    if data.get("timeframe") in (None, ""):
        data["timeframe"] = timeframe
    if instrument is not None:
        rules = data.get("instrument")
        if rules is None or isinstance(rules, Mapping):
            rules = dict(rules or {})
            for name in ("lot_size", "min_notional", "tick_size"):
                venue_value = getattr(instrument, name)
                if rules.get(name) is None and venue_value is not None and venue_value > 0:
                    rules[name] = float(venue_value)
            data["instrument"] = rules
    return EngineSettings.from_dict(data).as_dict()


def run_spec_validate(
    *,
    owner: User,
    strategy_key: str,
    params: Mapping[str, Any] | None,
    rule_set_id: Any,
    instrument_id: Any,
    timeframe: str,
    start_at: datetime | None,
    end_at: datetime | None,
    settings: Mapping[str, Any] | None,
    rules: Mapping[str, Any] | None = None,
) -> RunSpec:
    """Check a run from untrusted input, cheapest checks first; raise naming the field.

    A rule set (``rule_set_id``, the owner's only) runs as the ``rules`` strategy; its rules
    are snapshotted so the job is reproducible after the rule set changes. ``rules`` (a
    snapshot, e.g. of the job being re-run) is used when given instead of the rule set's.
    """
    key = (strategy_key or "").strip()
    rule_set = _rule_set(owner, rule_set_id) if rule_set_id not in (None, "") else None
    if rule_set is not None or rules is not None:
        if key not in ("", RULES_KEY):
            raise RunInputError("A rule set runs as the 'rules' strategy: choose one or the other.", field="rule_set")
        key = RULES_KEY
        rules = dict(rules) if rules is not None else (rule_set.rules if rule_set is not None else None)
    elif key == RULES_KEY:
        raise RunInputError("Choose one of your rule sets.", field="rule_set")
    strategy = strategy_build(strategy_key=key, params=params, rules=rules)
    if isinstance(strategy, RuleStrategy) and timeframe in timeframes.TIMEFRAMES:
        # Operands on another timeframe must be buildable from this one's candles.
        check_timeframes(strategy.rules, timeframe)
    instrument = _instrument(instrument_id)
    if timeframe not in timeframes.TIMEFRAMES:
        raise RunInputError(f"Unknown timeframe; use one of {', '.join(timeframes.TIMEFRAMES)}.", field="timeframe")
    # The owner may run it on this timeframe (an ML strategy's model is its owner's, on its own timeframe).
    strategy.assert_usable(user=owner, timeframe=timeframe)
    start = _aware(start_at, "start")
    end = _aware(end_at, "end")
    _range(instrument, timeframe, start, end)
    return RunSpec(
        strategy=strategy,
        strategy_key=key,
        params=strategy.params.as_dict() if key != RULES_KEY else {},
        rule_set=rule_set,
        rules=dict(rules) if rules is not None else None,
        instrument=instrument,
        timeframe=timeframe,
        start_at=start,
        end_at=end,
        settings=engine_settings_clean(settings, timeframe=timeframe, instrument=instrument),
    )


def run_strategy(*, strategy_key: str, params: Mapping[str, Any], rules: Mapping[str, Any] | None) -> Strategy:
    """The strategy of a stored job (validated when the job was created)."""
    return strategy_build(strategy_key=strategy_key, params=params if strategy_key != RULES_KEY else None, rules=rules)
