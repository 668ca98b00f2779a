"""Deployments: a strategy (or a rule set) with params running on a trading account.

Life cycle (`Deployment.Status`)::

    draft --start(paper)--> paper --pause--> paused --resume--> paper | live
          --start(live)---> live  --stop---> stopped --start--> paper | live
    paper | live --(risk: max drawdown, reconciliation, kill switch)--> halted --resume--> ...

- Create and update validate everything a tick will rely on, naming the field of every error:
  the strategy and its params (``strategy``, ``params.<name>``, ``rules.<path>``) through
  `strategy_build` and `strategy_assert_deployable` (a look-ahead-biased configuration cannot
  be deployed), the engine settings subset through `EngineSettings.from_dict`
  (``settings.<section>.<name>``; the instrument's rules come from the Instrument, the cash is
  the deployment's ``capital``), the risk limits through `DeploymentLimits.from_dict`
  (``risk.<name>``), the instruments (``instrument_ids``), the account (``account_id``: the
  owner's own), and the capital (``capital`` > 0). Only a draft or paused deployment is edited.
- Every change of state raises ``fence`` (the tick reads the deployment under its row lock, so
  a tick that started before a pause cannot act after it), is written to the audit trail and
  is broadcast to the owner as ``deployment.status`` after commit.
- Live trading needs a non-paper account and a second factor verified in the last
  SECOND_FACTOR_FRESH_SECONDS (``ReauthenticationRequired``); paper trading a paper account.

Locks are taken in the platform's order: trading account, then deployment.
"""

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from apps.accounts.models import TradingAccount
from apps.audit.services import audit_record
from apps.backtests.engine.settings import EngineSettings, InvalidSettingsError
from apps.common.broadcast import broadcast
from apps.common.errors import Conflict, ReauthenticationRequired
from apps.common.errors import field_error as _field_error
from apps.marketdata import timeframes
from apps.marketdata.models import CandleSeries, Instrument
from apps.strategies.base import Strategy
from apps.strategies.models import Deployment, RuleSet
from apps.strategies.services.rule_sets import RULES_KEY, strategy_assert_deployable, strategy_build
from apps.users.models import User

logger = logging.getLogger(__name__)

# The engine settings a deployment keeps (the rest come from elsewhere: cash = capital, the
# instrument's rules = the Instrument, timeframe = the deployment's).
SETTINGS_KEYS = ("fill", "entry", "limit_offset", "allow_short", "costs", "sizing", "exits")
SETTINGS_FROM_ELSEWHERE = {
    "cash": "the deployment's capital is its cash",
    "timeframe": "the deployment's timeframe applies",
    "instrument": "the instrument's own trading rules apply",
}
MAX_INSTRUMENTS = 20
MAX_CAPITAL = Decimal("1e15")
NAME_MAX_LENGTH = 120
EDITABLE = (Deployment.Status.DRAFT, Deployment.Status.PAUSED)
STARTABLE = (Deployment.Status.DRAFT, Deployment.Status.STOPPED)
RESUMABLE = (Deployment.Status.PAUSED, Deployment.Status.HALTED)
STOPPABLE = (Deployment.Status.PAPER, Deployment.Status.LIVE, Deployment.Status.PAUSED, Deployment.Status.HALTED)
MODES = ("paper", "live")


class DeploymentStateError(Conflict):
    """The deployment is not in a state that allows this (editing a running one, starting a
    stopped one live without the second factor is a ReauthenticationRequired instead)."""

    default_code = "deployment_state"


# --- validation ---------------------------------------------------------------------------------


def deployment_settings_validate(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The deployment's engine settings subset, validated by `EngineSettings.from_dict` and
    returned complete (defaults filled in). Keys the deployment takes from elsewhere (cash,
    timeframe, instrument) are refused with the reason, at ``settings.<key>``."""
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise _field_error("Settings must be an object.", "settings")
    for key, reason in SETTINGS_FROM_ELSEWHERE.items():
        if key in settings:
            raise InvalidSettingsError(f"not a deployment setting: {reason}.", field=f"settings.{key}")
    full = EngineSettings.from_dict(settings).as_dict()
    return {key: full[key] for key in SETTINGS_KEYS}


def deployment_risk_validate(risk: Mapping[str, Any] | None) -> dict[str, Any]:
    """The risk limits, validated by `apps.trades.risk.limits.DeploymentLimits.from_dict`
    (errors at ``risk.<name>``), as the JSON stored."""
    from apps.trades.risk.limits import DeploymentLimits

    if risk is None:
        risk = {}
    if not isinstance(risk, Mapping):
        raise _field_error("Risk limits must be an object.", "risk")
    limits = DeploymentLimits.from_dict(risk)
    as_dict = getattr(limits, "as_dict", None)
    data = as_dict() if callable(as_dict) else dataclasses.asdict(limits)
    return {key: _jsonable(value) for key, value in data.items() if value is not None}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def deployment_engine_settings(*, deployment: Deployment, instrument: Instrument) -> EngineSettings:
    """The EngineSettings a backtest of this deployment on ``instrument`` would run with: its
    settings, its capital as cash, its timeframe, and the instrument's trading rules."""

    def number(value: Decimal | None) -> float | None:
        return float(value) if value is not None and value > 0 else None

    data: dict[str, Any] = {key: value for key, value in (deployment.settings or {}).items() if key in SETTINGS_KEYS}
    data["cash"] = float(deployment.capital)
    data["timeframe"] = deployment.timeframe
    data["instrument"] = {
        "tick_size": number(instrument.tick_size),
        "lot_size": number(instrument.lot_size),
        "min_notional": float(instrument.min_notional) if instrument.min_notional else None,
    }
    return EngineSettings.from_dict(data)


def deployment_strategy(*, deployment: Deployment) -> Strategy:
    """The deployment's runnable strategy (its params, or the rules it was deployed with)."""
    strategy = strategy_build(
        strategy_key=deployment.strategy_key,
        params=None if deployment.strategy_key == RULES_KEY else deployment.params,
        rules=deployment.rules,
    )
    strategy.timeframe = deployment.timeframe
    return strategy


def _capital(value: Any) -> Decimal:
    try:
        capital = Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        raise _field_error("Capital must be a number.", "capital") from None
    if not capital.is_finite() or capital <= 0:
        raise _field_error("Capital must be more than zero.", "capital")
    if capital > MAX_CAPITAL:
        raise _field_error(f"Capital must be at most {MAX_CAPITAL:,.0f}.", "capital")
    return capital.quantize(Decimal("1e-10"))


def _account(owner: User, account_id: Any) -> TradingAccount:
    try:
        pk = int(account_id)
    except (TypeError, ValueError):
        raise _field_error("Choose one of your trading accounts.", "account_id") from None
    account = TradingAccount.objects.filter(owner=owner, pk=pk).first()
    if account is None:
        raise _field_error("Choose one of your trading accounts.", "account_id")
    if account.status == TradingAccount.Status.DISABLED:
        raise _field_error("This account is disabled.", "account_id")
    return account


def _instruments(instrument_ids: Iterable[Any] | None) -> list[Instrument]:
    if instrument_ids is None or isinstance(instrument_ids, str | bytes):
        raise _field_error("Choose at least one instrument.", "instrument_ids")
    try:
        ids = list(dict.fromkeys(int(i) for i in instrument_ids))
    except (TypeError, ValueError):
        raise _field_error("Instruments are given by their ids.", "instrument_ids") from None
    if not ids:
        raise _field_error("Choose at least one instrument.", "instrument_ids")
    if len(ids) > MAX_INSTRUMENTS:
        raise _field_error(f"At most {MAX_INSTRUMENTS} instruments per deployment.", "instrument_ids")
    found = {i.pk: i for i in Instrument.objects.filter(pk__in=ids, is_active=True)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise _field_error(f"There is no instrument {missing[0]}.", "instrument_ids")
    return [found[i] for i in ids]


def _timeframe(timeframe: Any) -> str:
    if not isinstance(timeframe, str) or timeframe not in timeframes.TIMEFRAMES:
        raise _field_error(f"Choose a timeframe: {', '.join(timeframes.TIMEFRAMES)}.", "timeframe")
    return timeframe


def _strategy(
    owner: User, strategy_key: str, params: Mapping[str, Any] | None, rule_set_id: Any, timeframe: Any = None
) -> tuple[str, dict[str, Any], RuleSet | None, Any]:
    """(strategy_key, params, rule set, rules) after building and checking the strategy, which
    must be usable by ``owner`` on ``timeframe`` (`Strategy.assert_usable`: an ML strategy's
    model is its owner's only)."""
    rule_set = None
    rules = None
    if rule_set_id not in (None, ""):
        try:
            pk = int(rule_set_id)
        except (TypeError, ValueError):
            raise _field_error("Choose one of your rule sets.", "rule_set_id") from None
        rule_set = RuleSet.objects.filter(owner=owner, pk=pk).first()
        if rule_set is None:
            raise _field_error("Choose one of your rule sets.", "rule_set_id")
        strategy_key, params, rules = RULES_KEY, {}, rule_set.rules
    elif (strategy_key or "").strip() == RULES_KEY:
        raise _field_error("A rule strategy is deployed from one of your rule sets.", "rule_set_id")
    strategy = strategy_build(strategy_key=strategy_key, params=params, rules=rules)
    strategy.assert_usable(user=owner, timeframe=timeframe if timeframe in timeframes.TIMEFRAMES else None)
    strategy_assert_deployable(strategy=strategy)
    return (
        strategy.key if rules is None else RULES_KEY,
        strategy.params.as_dict() if rules is None else {},
        rule_set,
        rules,
    )


def _name(name: str, strategy_key: str, instruments: list[Instrument]) -> str:
    name = (name or "").strip()
    if not name:
        name = f"{strategy_key} on {', '.join(i.symbol for i in instruments[:3])}"
    if len(name) > NAME_MAX_LENGTH:
        raise _field_error(f"Keep the name under {NAME_MAX_LENGTH} characters.", "name")
    return name[:NAME_MAX_LENGTH]


# --- create / update / delete ---------------------------------------------------------------------


@transaction.atomic
def deployment_create(
    *,
    owner: User,
    account_id: int,
    instrument_ids: Iterable[int],
    timeframe: str,
    capital: Decimal | str | float,
    strategy_key: str = "",
    params: Mapping[str, Any] | None = None,
    rule_set_id: int | None = None,
    settings: Mapping[str, Any] | None = None,
    risk: Mapping[str, Any] | None = None,
    name: str = "",
) -> Deployment:
    """Create a draft deployment after validating every input (see the module docstring).
    Nothing trades until `deployment_start`."""
    account = _account(owner, account_id)
    key, clean_params, rule_set, rules = _strategy(owner, strategy_key, params, rule_set_id, timeframe)
    instruments = _instruments(instrument_ids)
    deployment = Deployment(
        owner=owner,
        account=account,
        name=_name(name, key if rule_set is None else rule_set.name, instruments),
        strategy_key=key,
        params=clean_params,
        rule_set=rule_set,
        rules=rules,
        timeframe=_timeframe(timeframe),
        capital=_capital(capital),
        settings=deployment_settings_validate(settings),
        risk=deployment_risk_validate(risk),
    )
    deployment.full_clean(exclude=["instruments"])
    deployment.save()
    deployment.instruments.set(instruments)
    audit_record(
        action="deployment.created",
        actor=owner,
        target=deployment,
        details={"name": deployment.name, "account": account.pk, "strategy": key},
    )
    return deployment


UPDATABLE = (
    "name",
    "account_id",
    "strategy_key",
    "params",
    "rule_set_id",
    "instrument_ids",
    "timeframe",
    "capital",
    "settings",
    "risk",
)


# What a listed deployment's verified track record is computed from: it cannot change under
# its followers (a new capital would rescale the return; a new strategy is not what was reviewed).
LISTED_FIXED = frozenset(
    {"strategy_key", "params", "rule_set_id", "instrument_ids", "timeframe", "capital", "account_id"}
)


def _check_not_listed(deployment: Deployment, changes: Mapping[str, Any]) -> None:
    """Refuse a change of LISTED_FIXED on a deployment published on the marketplace (its listing
    is reached through the reverse relation the marketplace declares; no import of it here)."""
    fixed = sorted(LISTED_FIXED & set(changes))
    listing = getattr(deployment, "listing", None) if fixed else None
    if listing is not None:
        raise _field_error(
            "This deployment is listed on the marketplace: its strategy, instruments, timeframe and "
            "capital are what its track record is computed from and cannot change. Deploy a new one instead.",
            fixed[0],
            "listed",
        )


@transaction.atomic
def deployment_update(*, deployment: Deployment, actor: User | None = None, **changes: Any) -> Deployment:
    """Change a draft or paused deployment (any of UPDATABLE; what is not given is kept),
    validated as on create. The account only changes while a draft (a paused deployment may hold
    positions on its account). Raises DeploymentStateError for a running one."""
    unknown = sorted(set(changes) - set(UPDATABLE))
    if unknown:
        raise _field_error(f"'{unknown[0]}' cannot be changed.", unknown[0])
    deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
    if deployment.status not in EDITABLE:
        raise DeploymentStateError(
            f"A {deployment.get_status_display().lower()} deployment cannot be edited; pause it first."
        )
    owner = deployment.owner
    _check_not_listed(deployment, changes)
    if "account_id" in changes and int(changes["account_id"] or 0) != deployment.account_id:
        if deployment.status != Deployment.Status.DRAFT:
            raise _field_error("The account of a deployment that has traded cannot change.", "account_id")
        deployment.account = _account(owner, changes["account_id"])
    strategy_given = {"strategy_key", "params", "rule_set_id"} & set(changes)
    if strategy_given:
        rule_set_id = changes.get("rule_set_id", deployment.rule_set_id if "strategy_key" not in changes else None)
        key, params, rule_set, rules = _strategy(
            owner,
            changes.get("strategy_key", deployment.strategy_key),
            changes.get("params", deployment.params if "strategy_key" not in changes else None),
            rule_set_id,
            changes.get("timeframe", deployment.timeframe),
        )
        deployment.strategy_key, deployment.params, deployment.rule_set, deployment.rules = key, params, rule_set, rules
    elif "timeframe" in changes:
        # The strategy stays; it must still suit the new timeframe (an ML model is trained on one).
        deployment_strategy(deployment=deployment).assert_usable(
            user=owner, timeframe=changes["timeframe"] if changes["timeframe"] in timeframes.TIMEFRAMES else None
        )
    instruments = _instruments(changes["instrument_ids"]) if "instrument_ids" in changes else None
    if "timeframe" in changes:
        deployment.timeframe = _timeframe(changes["timeframe"])
    if "capital" in changes:
        deployment.capital = _capital(changes["capital"])
    if "settings" in changes:
        deployment.settings = deployment_settings_validate(changes["settings"])
    if "risk" in changes:
        deployment.risk = deployment_risk_validate(changes["risk"])
    if "name" in changes:
        deployment.name = _name(
            changes["name"], deployment.strategy_key, instruments or list(deployment.instruments.all())
        )
    deployment.fence += 1
    deployment.full_clean(exclude=["instruments"])
    deployment.save()
    if instruments is not None:
        deployment.instruments.set(instruments)
    audit_record(
        action="deployment.updated",
        actor=actor or owner,
        user=owner,
        target=deployment,
        details={"fields": sorted(changes)},
    )
    return deployment


@transaction.atomic
def deployment_delete(*, deployment: Deployment, actor: User | None = None) -> None:
    """Delete a draft deployment (one that never traded; others are stopped and kept)."""
    deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
    if deployment.status != Deployment.Status.DRAFT:
        raise DeploymentStateError("Only a draft deployment can be deleted; stop this one instead.")
    audit_record(
        action="deployment.deleted",
        actor=actor or deployment.owner,
        user=deployment.owner,
        target=deployment,
        details={"name": deployment.name},
    )
    deployment.delete()


# --- state changes ------------------------------------------------------------------------------


def _lock(deployment: Deployment) -> Deployment:
    """Lock the account, then the deployment (the platform's lock order); the fresh row."""
    list(TradingAccount.objects.select_for_update().filter(pk=deployment.account_id).values_list("pk", flat=True))
    return Deployment.objects.select_for_update().select_related("account", "owner").get(pk=deployment.pk)


def deployment_status_payload(deployment: Deployment) -> dict[str, Any]:
    return {
        "deployment": deployment.pk,
        "status": deployment.status,
        "status_display": deployment.get_status_display(),
        "reason": deployment.status_reason,
        "fence": deployment.fence,
    }


def _set_status(
    deployment: Deployment,
    status: str,
    *,
    reason: str,
    actor: Any,
    action: str,
    details: dict[str, Any] | None = None,
    request: HttpRequest | None = None,
) -> Deployment:
    previous = deployment.status
    now = timezone.now()
    deployment.status = status
    deployment.status_reason = (reason or "")[:500]
    deployment.fence += 1
    fields = ["status", "status_reason", "fence", "updated_at"]
    if status in Deployment.RUNNING and previous in STARTABLE:
        deployment.started_at = now
        deployment.stopped_at = None
        fields += ["started_at", "stopped_at"]
    if status == Deployment.Status.STOPPED:
        deployment.stopped_at = now
        fields.append("stopped_at")
    deployment.save(update_fields=fields)
    audit_record(
        action=action,
        actor=actor,
        user=deployment.owner,
        target=deployment,
        request=request,
        details={"from": previous, "to": status, "reason": deployment.status_reason, **(details or {})},
    )
    broadcast(deployment.owner_id, "deployment.status", deployment_status_payload(deployment))
    logger.info("deployment %s %s -> %s (%s)", deployment.pk, previous, status, deployment.status_reason)
    return deployment


def _mode_for(account: TradingAccount) -> str:
    return Deployment.Status.PAPER if account.kind == TradingAccount.Kind.PAPER else Deployment.Status.LIVE


def _check_mode(deployment: Deployment, mode: str, request: HttpRequest | None) -> None:
    account = deployment.account
    if mode not in MODES:
        raise _field_error("Mode is paper or live.", "mode")
    if account.status != TradingAccount.Status.ACTIVE:
        raise _field_error(
            f"The account '{account.name}' needs attention first: {account.get_status_display().lower()}.", "account_id"
        )
    if mode == "paper" and account.kind != TradingAccount.Kind.PAPER:
        raise _field_error("Paper trading runs on a paper account; this one trades real money (use live).", "mode")
    if mode == "live":
        if account.kind == TradingAccount.Kind.PAPER:
            raise _field_error("A paper account only paper trades; connect an exchange or broker account.", "mode")
        from apps.users.second_factor import second_factor_is_fresh

        if request is None or not second_factor_is_fresh(request, deployment.owner):
            raise ReauthenticationRequired(
                "Trading live needs your second factor, verified in the last 15 minutes.",
                extra={"reauth_url": "/2fa/verify/"},
            )


def _newest_bar(deployment: Deployment) -> Any:
    ids = list(deployment.instruments.values_list("pk", flat=True))
    series = CandleSeries.objects.filter(instrument_id__in=ids, timeframe=deployment.timeframe, last_ts__isnull=False)
    return series.order_by("-last_ts").values_list("last_ts", flat=True).first()


@transaction.atomic
def deployment_start(
    *, deployment: Deployment, mode: str = "paper", request: HttpRequest | None = None, actor: Any = None
) -> Deployment:
    """Start a draft (or stopped) deployment: ``paper`` on a paper account, ``live`` on an
    exchange or broker account with a fresh second factor (``ReauthenticationRequired``).
    Its first tick is the next bar that closes; bars stored before the start are history."""
    deployment = _lock(deployment)
    if deployment.status not in STARTABLE:
        raise DeploymentStateError(f"This deployment is {deployment.get_status_display().lower()}; it cannot start.")
    _check_mode(deployment, mode, request)
    strategy = deployment_strategy(deployment=deployment)
    # Again at start: what it trades may have gone since it was created (an ML strategy deleted).
    strategy.assert_usable(user=deployment.owner, timeframe=deployment.timeframe)
    strategy_assert_deployable(strategy=strategy)
    newest = _newest_bar(deployment)
    if newest is not None and (deployment.last_bar_ts is None or newest > deployment.last_bar_ts):
        deployment.last_bar_ts = newest
    if deployment.peak_equity is None:
        deployment.peak_equity = deployment.capital
    deployment.save(update_fields=["last_bar_ts", "peak_equity", "updated_at"])
    return _set_status(
        deployment,
        mode,
        reason="",
        actor=actor or deployment.owner,
        action="deployment.started",
        details={"mode": mode},
        request=request,
    )


@transaction.atomic
def deployment_pause(*, deployment: Deployment, reason: str = "", actor: Any = None) -> Deployment:
    """Pause a running deployment: its ticks do nothing until it is resumed. Open orders and
    positions (and their protective stops) stay as they are."""
    deployment = _lock(deployment)
    if deployment.status == Deployment.Status.PAUSED:
        return deployment
    if deployment.status not in Deployment.RUNNING:
        raise DeploymentStateError(f"This deployment is {deployment.get_status_display().lower()}; it cannot pause.")
    return _set_status(
        deployment,
        Deployment.Status.PAUSED,
        reason=reason or "Paused by its owner.",
        actor=actor,
        action="deployment.paused",
    )


@transaction.atomic
def deployment_halt(*, deployment: Deployment, reason: str, actor: Any = None) -> Deployment:
    """Halt a deployment (risk: the maximum drawdown, a reconciliation mismatch, an operator)
    through the deployment kill switch (`apps.trades.risk.switches.deployment_switch_set`: its
    open orders are cancelled after commit, the owner is told). It stays halted until its owner
    resumes it."""
    from apps.trades.risk.switches import deployment_switch_set

    deployment = _lock(deployment)
    if deployment.status in (Deployment.Status.HALTED, Deployment.Status.STOPPED, Deployment.Status.DRAFT):
        return deployment
    deployment = deployment_switch_set(
        deployment_id=deployment.pk, mode="halted", reason=reason or "Halted.", actor=actor
    )
    broadcast(deployment.owner_id, "deployment.status", deployment_status_payload(deployment))
    return deployment


@transaction.atomic
def deployment_resume(*, deployment: Deployment, request: HttpRequest | None = None, actor: Any = None) -> Deployment:
    """Resume a paused or halted deployment in its account's mode (live needs a fresh second
    factor again). Bars that closed meanwhile are not traded after the fact."""
    deployment = _lock(deployment)
    if deployment.status not in RESUMABLE:
        raise DeploymentStateError(f"This deployment is {deployment.get_status_display().lower()}; it cannot resume.")
    mode = _mode_for(deployment.account)
    _check_mode(deployment, mode, request)
    newest = _newest_bar(deployment)
    if newest is not None and (deployment.last_bar_ts is None or newest > deployment.last_bar_ts):
        deployment.last_bar_ts = newest
        deployment.save(update_fields=["last_bar_ts", "updated_at"])
    return _set_status(
        deployment, mode, reason="", actor=actor or deployment.owner, action="deployment.resumed", request=request
    )


@transaction.atomic
def deployment_stop(*, deployment: Deployment, close_positions: bool = False, actor: Any = None) -> Deployment:
    """Stop a deployment for good (it can be started again later as a new run). Its resting
    entry orders are cancelled; with ``close_positions`` its positions are closed at market
    (reduce-only, through the execution service) and their protective orders cancelled, else
    positions and their stops stay for the owner to manage."""
    from apps.trades.models import Order, Position

    deployment = _lock(deployment)
    if deployment.status not in STOPPABLE:
        if deployment.status == Deployment.Status.STOPPED:
            return deployment
        raise DeploymentStateError(f"This deployment is {deployment.get_status_display().lower()}; it cannot stop.")
    deployment = _set_status(
        deployment,
        Deployment.Status.STOPPED,
        reason="Stopped, positions closed." if close_positions else "Stopped.",
        actor=actor or deployment.owner,
        action="deployment.stopped",
        details={"close_positions": close_positions},
    )
    open_orders = Order.objects.filter(deployment=deployment, status__in=("open", "partially_filled"))
    if not close_positions:
        open_orders = open_orders.filter(reduce_only=False)
    # Cancels talk to the venue: after commit, never under the locks held here.
    order_ids = list(open_orders.values_list("pk", flat=True))
    transaction.on_commit(lambda: deployment_orders_cancel(order_ids=order_ids, actor=actor))
    if close_positions:
        from apps.trades.services.positions import position_close

        held = Position.objects.filter(deployment=deployment).exclude(quantity=0)
        for position in held:
            position_close(
                account_id=deployment.account_id,
                deployment_id=deployment.pk,
                instrument_id=position.instrument_id,
                reason="deployment stopped",
                source="exit",
            )
    return deployment


def deployment_orders_cancel(*, order_ids: list[int], actor: Any = None) -> None:
    """Cancel these orders through the execution service, one by one, outside any lock. An
    order already done by then (the venue filled it, or cancelled a bracket leg when the
    position closed) is skipped; a cancel that fails is logged and left to reconciliation:
    stopping, or exiting on a signal, must not fail on it."""
    if not order_ids:
        return
    from apps.trades.errors import OrderStateError
    from apps.trades.models import Order
    from apps.trades.services.orders import order_cancel

    for order in Order.objects.filter(pk__in=order_ids).exclude(status__in=Order.TERMINAL_STATUSES):
        try:
            order_cancel(order=order, actor=actor)
        except OrderStateError as exc:  # finished between the read and the cancel
            logger.info("order %s needs no cancel: %s", order.pk, exc.message)
        except Exception:
            logger.exception("cancelling order %s of deployment %s failed", order.pk, order.deployment_id)
