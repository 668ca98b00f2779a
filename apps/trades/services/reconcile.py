"""Reconciliation: compare the venue's view of an account with ours and repair what can be
explained; halt and alert on what cannot. Run at worker start, every minute (beat
``trades-reconcile``) and by ``manage.py reconcile``.

For one account, in this order (network calls outside transactions, each repair in its own):

1. Our orders that may be live (open, partially filled, unknown, and sending past the in-flight
   window) are asked about by client order id: their status becomes the venue's and fills we
   missed are imported (idempotent per trade id). Unknown and not-found orders follow the
   not-found rule of apps.trades.services.orders (never resent).
2. The venue's open orders: one with our prefix (apps.trades.client_ids.is_ours) that we have no
   row for is adopted (an Order row; source, deployment, instrument and leg read from the id's
   shape), with an audit row and a RiskEvent alert; one whose row we hold as finished takes the
   venue's status. Orders without our prefix (placed by hand) are left alone and counted.
3. The venue's fills since the last run (less RECONCILE_FILLS_MARGIN_SECONDS, default 300)
   whose trade ids we have not recorded are reported with an alert (a fill carries no order id
   to book it against; the position check below shows its effect).
4. Positions. The positions endpoint failing, or answering nothing while we hold positions, is
   not "flat": the account's trading state becomes HALTED with a RiskEvent alert and
   ``trading_halted``; no position is touched. Otherwise our net quantity per symbol (all
   deployments and manual trading) is compared with the venue's. On a spot account a venue
   holding larger than ours, in the same direction, is the owner's own coins (explained, only
   reported). Any other difference halts the account's deployments (status halted, reason) with
   an alert; positions are never set to a value by assumption.

A second run with nothing new at the venue changes nothing and raises no new alert.
"""

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from apps.accounts.brokers.base import AuthenticationBrokerError, Broker, BrokerError, NotSentError, OrderState
from apps.accounts.models import TradingAccount
from apps.accounts.services import account_set_trading_state
from apps.common.errors import NotFound
from apps.marketdata.models import Instrument
from apps.strategies.models import Deployment
from apps.trades import client_ids
from apps.trades.models import Fill, Order, Position, RiskEvent
from apps.trades.risk.checks import risk_event_record
from apps.trades.services import events
from apps.trades.services.orders import (
    LOCAL_ALGOS,
    _broker,
    deployments_stop_trading,
    inflight_seconds,
    order_resolve,
    order_sync,
)
from apps.trades.services.venue_state import order_adopt, order_apply_state, source_for_client_id

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
S = Order.Status
_STRATEGY_ID = re.compile(r"^tp([0-9a-z]+)\.([0-9a-z]+)\.([0-9a-z]+)\.([a-z])([0-9a-z]*)$")
_LEGS = {code: leg for leg, code in client_ids._LEG_CODES.items()}
POSITIONS_UNAVAILABLE = "positions_unavailable"
POSITION_MISMATCH = "position_mismatch"


@dataclass
class ReconcileReport:
    """What one reconciliation of one account found and did."""

    account_id: int
    skipped: str = ""
    orders_checked: int = 0
    orders_updated: list[str] = field(default_factory=list)
    fills_imported: int = 0
    orders_adopted: list[str] = field(default_factory=list)
    foreign_orders: int = 0
    unknown_fills: list[str] = field(default_factory=list)
    external_holdings: dict[str, str] = field(default_factory=dict)
    mismatches: dict[str, dict[str, str]] = field(default_factory=dict)
    account_halted: bool = False
    deployments_halted: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.orders_updated
            or self.fills_imported
            or self.orders_adopted
            or self.account_halted
            or self.deployments_halted
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "skipped": self.skipped,
            "orders_checked": self.orders_checked,
            "orders_updated": self.orders_updated,
            "fills_imported": self.fills_imported,
            "orders_adopted": self.orders_adopted,
            "foreign_orders": self.foreign_orders,
            "unknown_fills": self.unknown_fills,
            "external_holdings": self.external_holdings,
            "mismatches": self.mismatches,
            "account_halted": self.account_halted,
            "deployments_halted": self.deployments_halted,
            "errors": self.errors,
        }

    def summary(self) -> str:
        if self.skipped:
            return f"account {self.account_id}: skipped ({self.skipped})"
        parts = [
            f"{self.orders_checked} orders checked",
            f"{len(self.orders_updated)} updated",
            f"{self.fills_imported} fills imported",
            f"{len(self.orders_adopted)} adopted",
        ]
        if self.mismatches:
            parts.append(f"position mismatches: {', '.join(sorted(self.mismatches))}")
        if self.account_halted:
            parts.append("account HALTED")
        if self.deployments_halted:
            parts.append(f"deployments halted: {self.deployments_halted}")
        if self.errors:
            parts.append(f"errors: {'; '.join(self.errors)}")
        return f"account {self.account_id}: " + ", ".join(parts)


def account_reconcile(*, account_id: int) -> ReconcileReport:
    """Reconcile one account with its venue (see the module docstring). Raises NotFound for an
    unknown id; a disabled or needs-reconnect account is skipped."""
    account = TradingAccount.objects.filter(pk=account_id).first()
    if account is None:
        raise NotFound(f"No trading account {account_id}.")
    report = ReconcileReport(account_id=account_id)
    if account.status != TradingAccount.Status.ACTIVE:
        report.skipped = account.status
        return report
    fills_before = Fill.objects.filter(account_id=account_id).count()
    started = timezone.now()
    try:
        with _broker(account) as broker:
            _orders(account, broker, report)
            _venue_open_orders(account, broker, report)
            _venue_fills(account, broker, report)
            _positions(account, broker, report)
    except AuthenticationBrokerError as exc:
        report.errors.append(exc.message)
        return report
    report.fills_imported = Fill.objects.filter(account_id=account_id).count() - fills_before
    TradingAccount.objects.filter(pk=account_id).update(last_reconciled_at=started)
    if report.changed or report.errors:
        logger.warning("reconcile: %s", report.summary())
    return report


def _orders(account: TradingAccount, broker: Broker, report: ReconcileReport) -> None:
    stuck_before = timezone.now() - timedelta(seconds=inflight_seconds())
    ours = (
        Order.objects.filter(account_id=account.pk)
        .filter(Q(status__in=(S.OPEN, S.PARTIALLY_FILLED, S.UNKNOWN)) | Q(status=S.SENDING, sent_at__lt=stuck_before))
        .exclude(algo__in=LOCAL_ALGOS)
    )
    for order_id, client_order_id, before in ours.order_by("pk").values_list("pk", "client_order_id", "status"):
        report.orders_checked += 1
        try:
            if before in (S.UNKNOWN, S.SENDING):
                order_resolve(order_id=order_id, broker=broker)
            else:
                order_sync(order_id=order_id, broker=broker)
        except BrokerError as exc:
            report.errors.append(f"{client_order_id}: {exc.message}")
            continue
        after = Order.objects.values_list("status", flat=True).get(pk=order_id)
        if after != before:
            report.orders_updated.append(f"{client_order_id}: {before} -> {after}")


def _venue_open_orders(account: TradingAccount, broker: Broker, report: ReconcileReport) -> None:
    try:
        states = broker.fetch_open_orders()
    except BrokerError as exc:
        report.errors.append(f"open orders: {exc.message}")
        return
    for state in states:
        if not client_ids.is_ours(state.client_order_id):
            report.foreign_orders += 1
            continue
        row = Order.objects.filter(account_id=account.pk, client_order_id=state.client_order_id).first()
        if row is None:
            _adopt(account, state, report)
        elif row.status != state.status and state.status in (S.OPEN, S.PARTIALLY_FILLED) and row.is_terminal:
            before = row.status
            order_apply_state(order_id=row.pk, state=state)
            report.orders_updated.append(f"{row.client_order_id}: {before} -> {state.status}")


def _identity(account: TradingAccount, client_order_id: str) -> dict[str, Any]:
    """Deployment, instrument, leg and bar read from a strategy order's client id, when they
    belong to this account."""
    match = _STRATEGY_ID.match(client_order_id)
    if match is None:
        return {}
    deployment_id, seconds, instrument_id = (int(match.group(i), 36) for i in (1, 2, 3))
    if not Deployment.objects.filter(pk=deployment_id, account_id=account.pk).exists():
        return {}
    return {
        "deployment_id": deployment_id,
        "instrument": Instrument.objects.filter(pk=instrument_id).first(),
        "leg": _LEGS.get(match.group(4), ""),
        "bar_ts": datetime.fromtimestamp(seconds, tz=UTC),
    }


def _adopt(account: TradingAccount, state: OrderState, report: ReconcileReport) -> None:
    identity = _identity(account, state.client_order_id)
    order = order_adopt(
        account_id=account.pk,
        state=state,
        source=source_for_client_id(state.client_order_id),
        leg=identity.get("leg", ""),
        deployment_id=identity.get("deployment_id"),
        instrument=identity.get("instrument"),
    )
    if order is None:
        message = (
            f"The venue has an open order {state.client_order_id} ({state.symbol}) with our prefix "
            "for an instrument we do not know."
        )
        report.errors.append(message)
        _alert_once(account, None, "unknown_order", message, {"client_order_id": state.client_order_id})
        return
    if identity.get("bar_ts") and order.bar_ts is None:
        Order.objects.filter(pk=order.pk).update(bar_ts=identity["bar_ts"])
    order_apply_state(order_id=order.pk, state=state)
    report.orders_adopted.append(state.client_order_id)
    risk_event_record(
        account=account,
        deployment=order.deployment,
        order=order,
        kind=RiskEvent.Kind.ALERT,
        code="unknown_order",
        message=f"Adopted order {state.client_order_id} found open at the venue that we had no record of.",
        details={"client_order_id": state.client_order_id, "status": state.status},
    )


def _venue_fills(account: TradingAccount, broker: Broker, report: ReconcileReport) -> None:
    margin = timedelta(seconds=float(getattr(settings, "RECONCILE_FILLS_MARGIN_SECONDS", 300)))
    since = (account.last_reconciled_at or timezone.now() - timedelta(days=1)) - margin
    instruments = set(
        Order.objects.filter(account_id=account.pk, updated_at__gte=since).values_list("symbol", "instrument__venue")
    ) | set(
        Position.objects.filter(account_id=account.pk).exclude(quantity=0).values_list("symbol", "instrument__venue")
    )
    paper = account.kind == TradingAccount.Kind.PAPER
    for symbol in sorted({f"{s}@{v}" if paper else s for s, v in instruments}):
        try:
            fills = broker.fetch_fills(symbol, since)
        except BrokerError as exc:
            report.errors.append(f"fills {symbol}: {exc.message}")
            continue
        ids = {f.trade_id for f in fills}
        known = set(Fill.objects.filter(account_id=account.pk, trade_id__in=ids).values_list("trade_id", flat=True))
        unknown = sorted(ids - known)
        if unknown:
            report.unknown_fills.extend(f"{symbol}:{t}" for t in unknown)
            _alert_once(
                account,
                None,
                "unknown_fill",
                f"The venue reports {len(unknown)} fill(s) on {symbol} that belong to no order of ours.",
                {"symbol": symbol, "trade_ids": unknown},
            )


def _alert_once(
    account: TradingAccount, deployment: Any, code: str, message: str, details: dict[str, Any]
) -> RiskEvent | None:
    """A RiskEvent alert, unless the same alert (code and details) was raised already."""
    if RiskEvent.objects.filter(account_id=account.pk, kind=RiskEvent.Kind.ALERT, code=code, details=details).exists():
        return None
    return risk_event_record(
        account=account, deployment=deployment, kind=RiskEvent.Kind.ALERT, code=code, message=message, details=details
    )


def _halt_account(account: TradingAccount, reason: str, report: ReconcileReport) -> None:
    current = TradingAccount.objects.values_list("trading_state", "trading_state_reason").get(pk=account.pk)
    if current == (TradingAccount.TradingState.HALTED, reason[:500]):
        return
    account_set_trading_state(account_id=account.pk, state=TradingAccount.TradingState.HALTED, reason=reason)
    risk_event_record(
        account=account, deployment=None, kind=RiskEvent.Kind.ALERT, code=POSITIONS_UNAVAILABLE, message=reason
    )
    events.announce_halt(account_id=account.pk, deployment_id=None, reason=reason)
    report.account_halted = True


def _asset(symbol: str) -> str:
    """The base asset a symbol names: ``BTC/USDT@binance`` / ``BTC/USDT`` / ``BTC`` -> ``BTC``."""
    return symbol.partition("@")[0].partition("/")[0].strip().upper()


def _our_positions(account: TradingAccount, spot: bool) -> dict[str, Decimal]:
    """Our net quantity per venue key: the base asset on spot accounts (spot venues report
    balances per asset), the symbol otherwise."""
    rows = (
        Position.objects.filter(account_id=account.pk)
        .exclude(quantity=0)
        .values_list("symbol", "instrument__base", "quantity")
    )
    totals: dict[str, Decimal] = {}
    for symbol, base, quantity in rows:
        key = (base or _asset(symbol)).upper() if spot else symbol
        totals[key] = totals.get(key, ZERO) + quantity
    return {k: v for k, v in totals.items() if v}


def _positions(account: TradingAccount, broker: Broker, report: ReconcileReport) -> None:
    spot = account.market_type != TradingAccount.MarketType.FUTURE
    ours = _our_positions(account, spot)
    try:
        venue_reports = broker.fetch_positions()
    except NotSentError as exc:
        # Rate limited or unreachable before the venue looked: nothing was learned either way.
        # Try again at the next run instead of halting on our own throttling.
        report.errors.append(f"positions: not read this time ({exc.message})")
        return
    except BrokerError as exc:
        reason = f"Halted by reconciliation: the venue's positions could not be read ({exc.message})."
        report.errors.append(f"positions: {exc.message}")
        _halt_account(account, reason, report)
        return
    if not venue_reports and ours:
        reason = "Halted by reconciliation: the venue reported no positions while we hold some."
        report.errors.append("positions: empty answer while we hold positions")
        _halt_account(account, reason, report)
        return
    venue: dict[str, Decimal] = {}
    for position in venue_reports:
        key = _asset(position.symbol) if spot else position.symbol
        venue[key] = venue.get(key, ZERO) + position.quantity
    for symbol in sorted(set(ours) | set(venue)):
        mine, theirs = ours.get(symbol, ZERO), venue.get(symbol, ZERO)
        if mine == theirs:
            continue
        if spot and theirs > 0 and mine >= 0 and theirs > mine:
            report.external_holdings[symbol] = str(theirs - mine)
            continue
        report.mismatches[symbol] = {"ours": str(mine), "venue": str(theirs)}
    if not report.mismatches:
        return
    detail = ", ".join(f"{s}: ours {m['ours']}, venue {m['venue']}" for s, m in sorted(report.mismatches.items()))
    reason = f"Halted by reconciliation: positions differ from the venue's ({detail})."
    halted = deployments_stop_trading(
        account_id=account.pk, status=Deployment.Status.HALTED, reason=reason, code=POSITION_MISMATCH
    )
    report.deployments_halted.extend(halted)
    _alert_once(account, None, POSITION_MISMATCH, reason[:500], {"mismatches": report.mismatches})


def accounts_to_reconcile(*, include_quiet_paper: bool = False) -> list[int]:
    """The active accounts to reconcile (disabled and needs-reconnect ones are skipped): every
    venue account, and the paper accounts with something new to compare, unless
    ``include_quiet_paper``. A paper account's venue is rows in this database; when none of its
    paper orders changed since its last reconciliation (no fill, trigger, cancel or new order:
    each of those stamps ``updated_at``) and none of our orders for it is still on its way
    (new, sending, unknown), both books are what that run compared, and comparing them again
    finds what it found then. Skipping those keeps the every-minute beat from costing a task per
    idle paper account (thousands of them). Immediate-or-cancel paper orders (copies) do not
    count as a change: they are final when written, in the transaction that writes our Order
    and Fill for them (a copy fan-out to 10,000 followers must not make 10,000 accounts due)."""
    accounts = TradingAccount.objects.filter(status=TradingAccount.Status.ACTIVE)
    if not include_quiet_paper:
        from apps.accounts.models import PaperOrder

        changed = PaperOrder.objects.filter(
            account_id=OuterRef("pk"), updated_at__gte=OuterRef("last_reconciled_at")
        ).exclude(time_in_force="IOC")
        in_flight = Order.objects.filter(account_id=OuterRef("pk"), status__in=(S.NEW, S.SENDING, S.UNKNOWN))
        accounts = accounts.filter(
            ~Q(kind=TradingAccount.Kind.PAPER)
            | Q(last_reconciled_at__isnull=True)
            | Exists(changed)
            | Exists(in_flight)
        )
    return list(accounts.order_by("pk").values_list("pk", flat=True))
