"""The tick: a closed candle -> every running deployment on that series decides and orders.

`deployments_tick_enqueue` is the receiver of market data's ``candle_closed`` (after commit):
first the paper venue matches its resting orders against the bar
(`apps.accounts.paper.paper_bar_closed`), then one `deployment_tick` task per running deployment
on that instrument and timeframe goes to the ``ticks`` queue.

`deployment_tick` for one (deployment, instrument, bar), safe to run twice, late or at once:

1. Before any lock: the deployment's open orders are synced with the venue (fills recorded,
   positions current) and its unfilled entry limits from earlier bars are cancelled (a limit
   entry is good for one bar, as in the backtest engine). Network calls never run under a lock.
2. One transaction: INSERT the TickRun ``ON CONFLICT DO NOTHING`` (UNIQUE deployment,
   instrument, bar: a duplicate delivery, a second beat or an overlapping run inserts nothing,
   waits for the first to commit, and returns ``duplicate``), lock the account then the
   deployment (the platform's lock order; a pause, a stop or another tick of the deployment
   waits for this one), then skip unless running, unless the bar is the newest stored one and
   not older than ``last_bar_ts``.
3. The strategy runs over the newest ``window`` bars (loaded once per process per series and
   bar; the signals of one strategy configuration computed once per bar), the position is read,
   and the engine's decision rule applies (`decide`: exit, reverse, enter, no pyramiding), plus
   the time exit. An actionable decision is recorded as a Signal (UNIQUE per deployment,
   instrument and bar) and handed to `order_submit(raise_refusal=False)`: exits and reversals
   as reduce-only market orders first (the position's bracket legs cancelled), then the entry
   with its sizing inputs and its bracket (stop loss / take profit, or the strategy's own
   levels). A refusal is recorded on the order, the Signal and the TickRun (``refused:<code>``).
4. Trailing stop / break-even move with the bar (`trailing_update`); the loss limits are
   checked (`deployment_loss_check`: a daily loss pauses, the maximum drawdown halts).
5. The TickRun gets its outcome and duration; after commit the owner gets ``deployment.tick``.

Outcomes: ``order``, ``no_signal``, ``refused:<code>``, ``duplicate`` (not stored: the first
run's row is the record), ``not_running``, ``late``, ``old_bar``, ``no_candle``, ``error``.
"""

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pandas as pd
from django.db import connection, transaction
from django.utils import timezone

from apps.accounts.brokers.base import MarketRules
from apps.accounts.models import TradingAccount
from apps.backtests.engine.settings import EngineSettings
from apps.common.broadcast import broadcast
from apps.common.errors import ApplicationError
from apps.common.metrics import SIGNALS, TICK_TO_ORDER_SECONDS, TICKS
from apps.marketdata.indicators import atr as atr_indicator
from apps.marketdata.models import Instrument
from apps.marketdata.storage import candles_frame
from apps.strategies.base import Strategy, signals
from apps.strategies.errors import StrategyComputeError
from apps.strategies.lookahead import fingerprint
from apps.strategies.models import Deployment, Signal, TickRun
from apps.strategies.services.deployments import (
    deployment_engine_settings,
    deployment_halt,
    deployment_pause,
    deployment_strategy,
)

logger = logging.getLogger(__name__)

# Bars the strategy sees at each tick: its warm-up several times over (indicators with memory,
# such as EMAs, settle), at least WINDOW_MIN; just its warm-up (at least WINDOW_MIN) for a strategy
# whose warm-up is exact (``Strategy.exact_warmup``: an ML model, whose features are bit-identical
# on that window and which would otherwise predict thousands of rows to use the last one).
WINDOW_MIN = 200
WINDOW_WARMUP_MULTIPLE = 4
WINDOW_MAX = 5000
# Per-process caches (a worker process ticks many deployments on few series).
_CANDLES: dict[tuple[int, str], tuple[datetime, pd.DataFrame]] = {}
_DECISIONS: "OrderedDict[tuple[str, int, str, datetime, int], BarSignals]" = OrderedDict()
_DECISIONS_MAX = 4096
_PLANS: dict[int, "Plan"] = {}
_ACCOUNTS: dict[int, tuple[int, str]] = {}


@dataclass(frozen=True)
class BarSignals:
    """The strategy's verdict at one bar (the last row of `signals`), plus the bar."""

    enter_long: bool
    exit_long: bool
    enter_short: bool
    exit_short: bool
    stop_price: float
    target_price: float
    atr: float
    bar: dict[str, float]


@dataclass
class Plan:
    """What a deployment's ticks reuse while its fence is unchanged (settings, instruments and
    strategy only change while it is a draft or paused, and every change raises the fence)."""

    fence: int
    account_id: int
    owner_id: int
    account_kind: str
    strategy: Strategy
    fingerprint: str
    window: int
    instrument_ids: frozenset[int] = frozenset()
    settings: dict[int, EngineSettings] = field(default_factory=dict)
    instruments: dict[int, Instrument] = field(default_factory=dict)


def caches_clear() -> None:
    """Forget every per-process cache (tests; a worker needs none of this)."""
    _CANDLES.clear()
    _DECISIONS.clear()
    _PLANS.clear()
    _ACCOUNTS.clear()


# --- enqueue ------------------------------------------------------------------------------------


def deployments_tick_enqueue(*, instrument_id: int, timeframe: str, ts: datetime) -> int:
    """A bar closed: let the paper venue match it, then queue one tick per running deployment
    on this instrument and timeframe. Returns the number of ticks queued."""
    from apps.marketdata.models import Candle
    from apps.strategies import tasks

    bar = Candle.objects.filter(instrument_id=instrument_id, timeframe=timeframe, ts=ts).values(
        "open", "high", "low", "close", "volume"
    )
    values = bar.first()
    if values is not None:
        _paper_bar_closed(instrument_id, timeframe, ts, {k: float(v) for k, v in values.items()})  # type: ignore[arg-type]
    ids = list(
        Deployment.objects.filter(
            status__in=Deployment.RUNNING, timeframe=timeframe, instruments=instrument_id, kind=Deployment.Kind.STRATEGY
        ).values_list("pk", flat=True)
    )
    announced = timezone.now().isoformat()
    ts_iso = ts.astimezone(UTC).isoformat()
    if ids:
        # One broker connection for the whole fan-out (a thousand deployments on a market).
        with tasks.deployment_tick.app.producer_or_acquire() as producer:
            for deployment_id in ids:
                tasks.deployment_tick.apply_async((deployment_id, instrument_id, ts_iso, announced), producer=producer)
    return len(ids)


def _paper_bar_closed(instrument_id: int, timeframe: str, ts: datetime, bar: Mapping[str, float]) -> None:
    from apps.accounts.paper import paper_bar_closed

    try:
        changes = paper_bar_closed(instrument_id=instrument_id, timeframe=timeframe, ts=ts, bar=bar)
    except Exception:
        # The ticks still run (their exits and stops matter most); the next bar matches again.
        logger.exception("the paper venue failed to match bar %s of %s %s", ts, instrument_id, timeframe)
        return
    if changes and connection.in_atomic_block:
        # The venue's `paper_orders_changed` (which syncs these orders into ours) waits for an
        # outer transaction to commit: sync now, so the ticks below see this bar's fills.
        from apps.trades.services.orders import orders_sync_for_account

        for account_id, client_order_ids in changes.items():
            orders_sync_for_account(account_id=account_id, client_order_ids=client_order_ids)


# --- the tick -----------------------------------------------------------------------------------


@dataclass
class Tick:
    deployment_id: int
    instrument_id: int
    bar_ts: datetime
    announced_at: datetime | None
    started: float = field(default_factory=time.perf_counter)
    outcome: str = "no_signal"
    action: str = Signal.Action.NONE
    orders: list[int] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    # The deployment's account, locked by this tick's transaction (set once the locks are held).
    account: TradingAccount | None = None


def _aware(value: datetime | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def deployment_tick(
    *, deployment_id: int, instrument_id: int, bar_ts: datetime | str, announced_at: datetime | str | None = None
) -> str:
    """Tick one deployment for one closed bar of one instrument (see the module docstring).
    Returns the outcome. Raises only on infrastructure errors (the database went away), which
    the task retries; a strategy that fails is recorded as ``error`` and not retried."""
    ts = _aware(bar_ts)
    assert ts is not None
    tick = Tick(deployment_id, instrument_id, ts, _aware(announced_at))
    _before_locks(tick)
    try:
        with transaction.atomic():
            tick.outcome = _locked(tick)
    except (StrategyComputeError, ApplicationError) as exc:
        # The strategy broke its contract, or a service refused what the tick built: not worth
        # retrying. Recorded (which also keeps a redelivery of this bar from running again).
        tick.outcome = "error"
        tick.details["error"] = exc.message
        _record_failure(tick)
    TICKS.labels(outcome=tick.outcome.split(":", 1)[0]).inc()
    if tick.action != Signal.Action.NONE and tick.outcome != "error":
        SIGNALS.labels(action=tick.action, source="strategy").inc()
        if tick.orders:  # committed: written, and accepted by a paper venue
            TICK_TO_ORDER_SECONDS.observe(time.perf_counter() - tick.started)
    return tick.outcome


def _account_of(deployment_id: int) -> tuple[int, str] | None:
    """(account id, account kind) of a deployment, cached per process (an account only
    changes while the deployment is a draft, which does not tick)."""
    if deployment_id not in _ACCOUNTS:
        row = Deployment.objects.filter(pk=deployment_id).values_list("account_id", "account__kind").first()
        if row is None:
            return None
        _ACCOUNTS[deployment_id] = (row[0], row[1])
    return _ACCOUNTS[deployment_id]


def _before_locks(tick: Tick) -> None:
    """Sync the deployment's open orders with the venue and cancel entry limits from earlier
    bars, outside any transaction (these may be network calls). Paper orders need no sync
    here: the paper venue's matching of this bar synced them before the ticks were queued."""
    from apps.trades.models import Order

    account = _account_of(tick.deployment_id)
    if account is None:
        return
    open_orders = list(
        Order.objects.filter(
            deployment_id=tick.deployment_id,
            instrument_id=tick.instrument_id,
            status__in=("open", "partially_filled"),
        ).values_list("pk", "leg", "type", "bar_ts")
    )
    if not open_orders:
        return
    from apps.trades.services.orders import order_cancel, order_sync

    if account[1] != TradingAccount.Kind.PAPER:
        for pk, _leg, _type, _bar in open_orders:
            try:
                order_sync(order_id=pk)
            except Exception:
                logger.exception("tick %s: syncing order %s failed", tick.deployment_id, pk)
    stale = [
        pk for pk, leg, kind, bar in open_orders if leg == "entry" and kind == "limit" and bar and bar < tick.bar_ts
    ]
    for order in Order.objects.filter(pk__in=stale, status__in=("open", "partially_filled")):
        try:
            order_cancel(order=order)
        except Exception:
            logger.exception("tick %s: cancelling the expired entry limit %s failed", tick.deployment_id, order.pk)


def _claim(tick: Tick) -> int | None:
    """INSERT the TickRun unless one exists for this bar; its id, or None for a duplicate."""
    ops = connection.ops
    now = timezone.now()
    table = TickRun._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (deployment_id, instrument_id, bar_ts, announced_at, started_at, outcome) "  # noqa: S608 - the model's own table name
            "VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (deployment_id, instrument_id, bar_ts) DO NOTHING RETURNING id",
            [
                tick.deployment_id,
                tick.instrument_id,
                ops.adapt_datetimefield_value(tick.bar_ts),
                ops.adapt_datetimefield_value(tick.announced_at),
                ops.adapt_datetimefield_value(now),
                "running",
            ],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else None


def _locked(tick: Tick) -> str:
    account = _account_of(tick.deployment_id)
    if account is None:
        return "not_running"
    account_id = account[0]
    run_id = _claim(tick)
    if run_id is None:
        logger.info("duplicate_tick deployment=%s bar=%s", tick.deployment_id, tick.bar_ts.isoformat())
        return "duplicate"
    # The whole account row (and its owner, for the audit trail), locked: `order_submit` takes
    # it from here instead of reading and locking it again. Only the account row is locked.
    account_row = (
        TradingAccount.objects.select_for_update(of=("self",)).select_related("owner").filter(pk=account_id).first()
    )
    deployment = Deployment.objects.select_for_update().get(pk=tick.deployment_id)
    # The run starts once the locks are held: time spent waiting behind an overlapping tick of
    # the same deployment is not part of it, so TickRun rows show that runs never overlap.
    # Written with the outcome below: nobody sees the row before this transaction commits.
    started_at = timezone.now()
    if account_row is None:
        outcome = "not_running"
    else:
        tick.account = account_row
        outcome = _decide_and_act(tick, deployment)
    if outcome not in ("not_running", "late") and (
        deployment.last_bar_ts is None or tick.bar_ts > deployment.last_bar_ts
    ):
        Deployment.objects.filter(pk=deployment.pk).update(last_bar_ts=tick.bar_ts)
    finished = timezone.now()
    duration_ms = (time.perf_counter() - tick.started) * 1000.0
    TickRun.objects.filter(pk=run_id).update(
        started_at=started_at, outcome=outcome[:40], finished_at=finished, duration_ms=duration_ms
    )
    if outcome not in ("not_running", "late", "old_bar", "no_candle"):
        broadcast(
            deployment.owner_id,
            "deployment.tick",
            {
                "deployment": deployment.pk,
                "instrument": tick.instrument_id,
                "bar_ts": tick.bar_ts,
                "action": tick.action,
                "outcome": outcome,
                "orders": tick.orders,
                "details": tick.details,
            },
        )
    return outcome


def _record_failure(tick: Tick) -> None:
    """A tick whose strategy failed: the TickRun says so (and blocks a retry of that bar)."""
    now = timezone.now()
    duration_ms = (time.perf_counter() - tick.started) * 1000.0
    TickRun.objects.update_or_create(
        deployment_id=tick.deployment_id,
        instrument_id=tick.instrument_id,
        bar_ts=tick.bar_ts,
        defaults={
            "announced_at": tick.announced_at,
            "started_at": now,
            "finished_at": now,
            "outcome": "error",
            "duration_ms": duration_ms,
        },
    )
    logger.warning("tick %s at %s failed: %s", tick.deployment_id, tick.bar_ts, tick.details.get("error"))


# --- deciding -----------------------------------------------------------------------------------


def _plan(deployment: Deployment) -> Plan:
    plan = _PLANS.get(deployment.pk)
    if plan is not None and plan.fence == deployment.fence:
        return plan
    strategy = deployment_strategy(deployment=deployment)
    warmup = max(int(strategy.warmup()), 1)
    account = _account_of(deployment.pk)
    assert account is not None
    plan = Plan(
        fence=deployment.fence,
        account_id=deployment.account_id,
        owner_id=deployment.owner_id,
        account_kind=account[1],
        strategy=strategy,
        fingerprint=fingerprint(strategy),
        window=_window(strategy, warmup),
    )
    # The deployment's instruments in one read (their ids decide which bars tick it).
    plan.instruments = {i.pk: i for i in deployment.instruments.all()}
    plan.instrument_ids = frozenset(plan.instruments)
    _PLANS[deployment.pk] = plan
    return plan


def _window(strategy: Strategy, warmup: int) -> int:
    if strategy.exact_warmup:
        # WINDOW_MIN still: the ATR of risk-per-trade sizing settles on it, as in every tick.
        return min(max(WINDOW_MIN, warmup), WINDOW_MAX)
    return min(max(WINDOW_MIN, warmup * WINDOW_WARMUP_MULTIPLE), WINDOW_MAX)


def _instrument(plan: Plan, deployment: Deployment, instrument_id: int) -> tuple[Instrument, EngineSettings]:
    instrument = plan.instruments[instrument_id]
    if instrument_id not in plan.settings:
        plan.settings[instrument_id] = deployment_engine_settings(deployment=deployment, instrument=instrument)
    return instrument, plan.settings[instrument_id]


def window_candles(*, instrument_id: int, timeframe: str, bar_ts: datetime, bars: int) -> pd.DataFrame | str:
    """The newest ``bars`` candles ending with ``bar_ts``, from a per-process cache that holds
    the newest bar of each series; ``"old_bar"`` when a newer bar is stored (the tick is for
    an old bar), ``"no_candle"`` when ``bar_ts`` is not stored."""
    key = (instrument_id, timeframe)
    cached = _CANDLES.get(key)
    if cached is not None:
        newest, frame = cached
        if newest > bar_ts:
            return "old_bar"
        if newest == bar_ts and len(frame) >= bars:
            return frame.iloc[-bars:] if len(frame) > bars else frame
    frame = candles_frame(instrument_id, timeframe, limit=bars)
    if frame.empty:
        return "no_candle"
    newest_ts = frame.index[-1].to_pydatetime()
    if newest_ts > bar_ts:
        return "old_bar"
    if newest_ts < bar_ts:
        return "no_candle"
    if cached is None or cached[0] <= newest_ts:
        _CANDLES[key] = (newest_ts, frame)
    return frame


def bar_signals(
    *, plan: Plan, settings: EngineSettings, candles: pd.DataFrame, bar_ts: datetime, instrument_id: int
) -> BarSignals:
    """The strategy's signals at the last bar of ``candles``, computed once per process per
    strategy configuration, series and bar (a thousand deployments of one configuration on one
    market share one computation)."""
    key = (plan.fingerprint, instrument_id, plan.strategy.timeframe or "", bar_ts, len(candles))
    found = _DECISIONS.get(key)
    if found is not None:
        return found
    frame = signals(plan.strategy, candles)
    last = frame.iloc[-1]
    sizing = settings.sizing
    atr_value = float("nan")
    if sizing.mode == "risk_per_trade" and settings.exits.stop_loss is None:
        series = atr_indicator(candles["high"], candles["low"], candles["close"], sizing.atr_period)
        atr_value = float(series.iloc[-1])
    row = candles.iloc[-1]
    result = BarSignals(
        enter_long=bool(last["enter_long"]),
        exit_long=bool(last["exit_long"]),
        enter_short=bool(last["enter_short"]),
        exit_short=bool(last["exit_short"]),
        stop_price=float(last["stop_price"]),
        target_price=float(last["target_price"]),
        atr=atr_value,
        bar={c: float(row[c]) for c in ("open", "high", "low", "close", "volume")},
    )
    _DECISIONS[key] = result
    while len(_DECISIONS) > _DECISIONS_MAX:
        _DECISIONS.popitem(last=False)
    return result


def decide(pos: int, s: BarSignals, allow_short: bool) -> tuple[bool, int]:
    """(close the position?, side to enter: 1 long, -1 short, 0 none): the backtest engine's
    rule (apps.backtests.engine.fills._decide). An entry with its own exit on the same bar, or
    long and short entries together, are conflicts and count as no entry; no pyramiding."""
    go_long = s.enter_long and not s.exit_long
    go_short = s.enter_short and not s.exit_short
    if go_long and go_short:
        go_long = go_short = False
    if pos == 1:
        return (s.exit_long or go_short), (-1 if go_short and allow_short else 0)
    if pos == -1:
        return (s.exit_short or go_long), (1 if go_long else 0)
    if go_long:
        return False, 1
    if go_short and allow_short:
        return False, -1
    return False, 0


def _decide_and_act(tick: Tick, deployment: Deployment) -> str:
    if not deployment.is_running:
        return "not_running"
    if deployment.last_bar_ts is not None and tick.bar_ts < deployment.last_bar_ts:
        return "late"
    plan = _plan(deployment)
    if tick.instrument_id not in plan.instrument_ids:
        return "not_running"
    instrument, settings = _instrument(plan, deployment, tick.instrument_id)
    candles = window_candles(
        instrument_id=tick.instrument_id, timeframe=deployment.timeframe, bar_ts=tick.bar_ts, bars=plan.window
    )
    if isinstance(candles, str):
        return candles
    verdict = bar_signals(
        plan=plan, settings=settings, candles=candles, bar_ts=tick.bar_ts, instrument_id=tick.instrument_id
    )
    from apps.strategies.services.tick_orders import act

    return act(tick=tick, deployment=deployment, plan=plan, instrument=instrument, settings=settings, s=verdict)


def market_rules(instrument: Instrument) -> MarketRules:
    """The instrument's trading rules as the broker contract states them."""

    def positive(value: Decimal | None) -> Decimal | None:
        return value if value is not None and value > 0 else None

    return MarketRules(
        symbol=instrument.symbol,
        base=instrument.base,
        quote=instrument.quote,
        step_size=positive(instrument.lot_size),
        tick_size=positive(instrument.tick_size),
        min_notional=positive(instrument.min_notional),
    )


def loss_check(*, deployment: Deployment, equity: Decimal) -> str | None:
    """Apply the deployment's loss limits at this equity (`deployment_loss_check` also tracks
    its peak and day-start equity): a daily loss pauses it, the maximum drawdown halts it, with
    the reason. Returns the reason, or None."""
    from apps.trades.risk.checks import deployment_loss_check

    verdict = deployment_loss_check(deployment=deployment, equity=equity)
    if not verdict:
        return None
    action, reason = verdict
    if action == "halt":
        deployment_halt(deployment=deployment, reason=reason)  # the kill switch announces it
    else:
        from apps.trades.services.events import announce_halt

        deployment_pause(deployment=deployment, reason=reason)
        # A pause by risk is announced like a halt (its owner is notified, "daily loss reached").
        announce_halt(account_id=deployment.account_id, deployment_id=deployment.pk, reason=reason)
    return reason
