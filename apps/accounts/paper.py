"""The paper venue: a Broker whose exchange is the database (PaperBalance, PaperOrder,
PaperFill), filled against the candle feed with the backtest engine's rules.

Orders rest until a bar of their series closes: :func:`paper_bar_closed` (in
:mod:`apps.accounts.paper_matching`, re-exported here) matches them, called by the tick fan-out
for every closed bar. An order accepted while bar t was the newest closed bar of its series
(``accepted_bar_ts`` = t) is first matched against bar t + 1: a market order placed at a
signal bar's close fills at the next bar's open, as the engine's ``next_open`` fills do.

Submitting
- ``symbol``: the instrument's symbol. The instrument is the active one with that symbol on
  the venue named by ``symbol@venue`` (e.g. ``BTC/USDT@binance``), else on the account's
  ``connection["venue"]``, else the only one listed; among several, the one with a live series,
  then the one with the newest stored bar, then the lowest id.
- The series: ``request.timeframe``, else the instrument's finest live series, else its finest
  stored one. No series -> InvalidOrderError.
- Rules from the Instrument (tick_size, lot_size, min_notional): quantities on the lot grid,
  prices on the tick grid, the value (at the limit, the stop, or the last close for a market
  order) at least min_notional; else InvalidOrderError. An order sized at the fill (``sizing``
  or a market buy's ``quote_quantity``) is checked at the fill instead.
- Funds: a buy reserves quote (quantity * price estimate * (1 + the higher fee rate) + the
  fixed fee; a sized buy its ``equity``; a quote_quantity buy that amount); a sell with
  shorting off reserves its base quantity. Reduce-only orders reserve nothing. What resting
  orders reserve counts: free = total - reserved. Not enough -> InsufficientFundsError.
- Idempotent on ``client_order_id``: the same id returns the existing order's state, never a
  second order (whatever else the request says).
- ``time_in_force``: ``GTC`` (rests until filled or cancelled) or ``GTB`` (good for one bar:
  the engine's limit entry, valid for the next bar only).

``request.sizing`` (sized at the fill, :func:`apps.backtests.engine.sizing.entry_size_raw`):
``mode`` (name or engine code), ``equity`` (the cash the entry may use; the account is flat),
``fraction``, ``amount``, ``risk``, ``kelly`` (the Kelly fraction the caller computed; default
``fraction``), ``stop_distance`` (price units, the ATR stop distance), ``lot``,
``min_notional``, ``tick`` (default the instrument's), and for risk-per-trade sizing
``stop_loss`` / ``stop_price`` when not in ``attached``. The stop distance is taken at the
fill's reference price as the engine does: the absolute stop, else stop_loss * price, else
``stop_distance``. A reversal: ``exit_client_order_id`` (the reduce-only exit placed with it)
and ``mark_price`` (the price ``equity`` valued the exited position at): when that exit
filled in the same bar, the equity becomes the cash after it, as in the engine. Cost keys
(``fee``, ``rate``, ``slippage``...) are accepted and ignored: the account's costs apply.

``request.attached`` (a bracket, placed natively as an OCO pair when the entry fills):
``stop_loss`` / ``take_profit`` (fractions of the fill price), ``stop_price`` / ``target_price``
(absolute, they win), ``stop_distance`` (absolute distance from the fill price, the engine's
ATR stop), ``stop_client_order_id`` / ``target_client_order_id`` (default: the entry's id +
``.s`` / ``.t``).

Costs per account: ``connection["costs"]`` (EngineSettings costs: fee, maker_fee, fee_fixed,
slippage, slippage_bps, impact; default fee 0.001, no slippage). Shorting:
``connection["allow_short"]`` (default true; a short is a negative base balance, no margin).
"""

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Count, F, Max, Q
from django.utils import timezone

from apps.accounts.brokers.base import (
    ORDER_TYPES,
    Balance,
    Broker,
    Capabilities,
    ConnectionReport,
    FillReport,
    InsufficientFundsError,
    InvalidOrderError,
    MarketRules,
    OrderNotFoundError,
    OrderRequest,
    OrderState,
    PermanentBrokerError,
    Permissions,
    PositionReport,
)
from apps.accounts.models import PaperBalance, PaperFill, PaperOrder, TradingAccount
from apps.accounts.paper_matching import (
    ACTIVE,
    ATTACHED_NUMBERS,
    ATTACHED_TEXT,
    SIZING_IGNORED,
    SIZING_NUMBERS,
    SIZING_TEXT,
    STOP_TYPES,
    base_quote,
    decimal_or_none,
    paper_bar_closed,
    paper_costs,
    paper_orders_announce,
    sizing_mode,
)
from apps.backtests.engine.settings import CostSettings, InvalidSettingsError
from apps.common.errors import ValidationFailed
from apps.marketdata.models import Candle, CandleSeries, Instrument
from apps.marketdata.storage import candles_frame
from apps.marketdata.timeframes import TIMEFRAMES

__all__ = [
    "PaperBroker",
    "paper_account_fund",
    "paper_bar_closed",
    "paper_replace_stop",
    "paper_symbol",
]

TIME_IN_FORCE = ("GTC", "GTB", "IOC")


def paper_symbol(instrument: Instrument) -> str:
    """The fully qualified symbol of an instrument for the paper venue (``BTC/USDT@binance``)."""
    return f"{instrument.symbol}@{instrument.venue}"


def _paper_account(account_id: int, *, lock: bool = False) -> TradingAccount:
    qs = TradingAccount.objects.select_for_update() if lock else TradingAccount.objects
    account = qs.filter(pk=account_id, kind=TradingAccount.Kind.PAPER).first()
    if account is None:
        raise PermanentBrokerError(f"There is no paper account {account_id}.", code="no_account")
    return account


def _on_grid(value: Decimal, step: Decimal | None) -> bool:
    return step is None or step <= 0 or (value / step) == (value / step).to_integral_value()


# --- Reading the book ---------------------------------------------------------------------------


def _fill_report(fill: PaperFill) -> FillReport:
    return FillReport(
        trade_id=fill.trade_id,
        quantity=fill.quantity,
        price=fill.price,
        fee=fill.fee,
        fee_currency=fill.fee_currency,
        at=fill.filled_at,
        is_maker=fill.is_maker,
    )


def _state(order: PaperOrder, *, fills: tuple[FillReport, ...] | None = None) -> OrderState:
    """An order as the venue reports it (use with ``prefetch_related("fills")``, or give its
    ``fills``: none for an order just accepted)."""
    return OrderState(
        client_order_id=order.client_order_id,
        status=order.status,
        exchange_order_id=order.exchange_order_id,
        symbol=order.symbol,
        side=order.side,
        type=order.type,
        quantity=order.quantity,
        price=order.price,
        stop_price=order.stop_price,
        filled_quantity=order.filled_quantity,
        average_price=order.average_price,
        fills=fills if fills is not None else tuple(_fill_report(f) for f in order.fills.all()),
        reason=order.reason,
        updated_at=order.updated_at,
    )


def _balances(account_id: int) -> list[Balance]:
    rows = PaperBalance.objects.filter(account_id=account_id).order_by("asset")
    return [Balance(asset=row.asset, free=row.free, locked=row.locked) for row in rows]


# --- Checking an order --------------------------------------------------------------------------


def _check_numbers(data: Mapping[str, Any], numbers: tuple[str, ...], text: tuple[str, ...], where: str) -> None:
    for key, value in data.items():
        if key in numbers:
            if value is not None and (isinstance(value, bool) or decimal_or_none(value) is None):
                raise InvalidOrderError(f"{where}.{key} must be a number.")
        elif key in text:
            if value is not None and not (isinstance(value, str | int) and 0 < len(str(value)) <= 40):
                raise InvalidOrderError(f"{where}.{key} must be a short text.")
        elif not (where == "sizing" and key in SIZING_IGNORED):
            raise InvalidOrderError(f"{where}.{key} is not understood by the paper venue.")


def _check_sizing(sizing: Mapping[str, Any] | None, attached: Mapping[str, Any] | None) -> None:
    if sizing is not None:
        if not isinstance(sizing, Mapping):
            raise InvalidOrderError("sizing must be an object.")
        _check_numbers(sizing, SIZING_NUMBERS, SIZING_TEXT, "sizing")
        try:
            sizing_mode(sizing.get("mode", "all_equity"))
        except ValueError as exc:
            raise InvalidOrderError(str(exc)) from exc
        equity = decimal_or_none(sizing.get("equity"))
        if equity is None or equity <= 0:
            raise InvalidOrderError("sizing.equity must be a positive number.")
    if attached is not None:
        if not isinstance(attached, Mapping):
            raise InvalidOrderError("attached must be an object.")
        _check_numbers(attached, ATTACHED_NUMBERS, ATTACHED_TEXT, "attached")
        for key in ATTACHED_NUMBERS:
            value = decimal_or_none(attached.get(key))
            if value is not None and value <= 0:
                raise InvalidOrderError(f"attached.{key} must be positive.")
        stop_loss = decimal_or_none(attached.get("stop_loss"))
        if stop_loss is not None and stop_loss >= 1:
            raise InvalidOrderError("attached.stop_loss is a fraction of the fill price below 1.")


class PaperBroker(Broker):
    """The paper venue of one paper TradingAccount (module docstring). Every call is a short
    database transaction; the account's row lock orders submits, cancels and bar matching."""

    name = "paper"

    def __init__(self, account_id: int, *, account: TradingAccount | None = None):
        """``account``: the paper account's row as the caller already read it (no query)."""
        if account is None or account.pk != account_id or account.kind != TradingAccount.Kind.PAPER:
            account = _paper_account(account_id)
        self.account_id = int(account.pk)
        self._connection: Mapping[str, Any] = account.connection if isinstance(account.connection, Mapping) else {}
        self.capabilities = Capabilities(
            order_types=frozenset(ORDER_TYPES),
            shorting=bool(self._connection.get("allow_short", True)),
            fractional=True,
            native_oco=True,
            quote_quantity_market_buy=True,
            reports_withdraw_permission=True,
        )
        self._instruments: dict[str, Instrument] = {}

    # --- instruments and rules

    def instrument(self, symbol: str) -> Instrument:
        """The instrument a symbol names here (module docstring); InvalidOrderError if none."""
        if symbol in self._instruments:
            return self._instruments[symbol]
        name, _, venue = symbol.partition("@")
        venue = venue.strip().lower() or str(self._connection.get("venue") or "")
        qs = Instrument.objects.filter(symbol=name.strip(), is_active=True)
        if venue:
            qs = qs.filter(venue=venue)
        found = (
            qs.annotate(
                live=Count("series", filter=Q(series__is_live=True)),
                newest=Max("series__last_ts"),
            )
            .order_by(F("live").desc(), F("newest").desc(nulls_last=True), "pk")
            .first()
        )
        if found is None:
            raise InvalidOrderError(f"The paper venue does not list {symbol}.", code="unknown_symbol")
        self._instruments[symbol] = found
        return found

    def market_rules(self, symbol: str) -> MarketRules:
        instrument = self.instrument(symbol)
        base, quote = base_quote(instrument)
        return MarketRules(
            symbol=instrument.symbol,
            base=base,
            quote=quote,
            step_size=instrument.lot_size,
            tick_size=instrument.tick_size,
            min_quantity=instrument.lot_size,
            min_notional=instrument.min_notional,
        )

    def _timeframe(self, instrument: Instrument, requested: str | None) -> str:
        if requested:
            if requested not in TIMEFRAMES:
                raise InvalidOrderError(f"Unknown timeframe {requested!r}.")
            return requested
        series = [
            (not s.is_live, TIMEFRAMES.get(s.timeframe, 0), s.timeframe)
            for s in CandleSeries.objects.filter(instrument=instrument, last_ts__isnull=False)
        ]
        if not series:
            raise InvalidOrderError(f"{instrument.symbol} has no candles to fill paper orders against.")
        return min(series)[2]

    # --- the account

    def test_connection(self) -> ConnectionReport:
        return ConnectionReport(
            ok=True, balances=tuple(self.fetch_balances()), permissions=self.fetch_permissions(), message="Paper venue."
        )

    def fetch_permissions(self) -> Permissions:
        return Permissions(
            can_trade=True,
            can_withdraw=False,
            can_margin=self.capabilities.shorting,
            can_futures=False,
            detail="The built-in paper venue: simulated fills, no withdrawals.",
        )

    def fetch_balances(self) -> list[Balance]:
        return _balances(self.account_id)

    def fetch_positions(self) -> list[PositionReport]:
        """Base-asset balances as positions: every non-zero asset that is the base of an
        instrument this account traded here (else of any listed instrument)."""
        rows = PaperBalance.objects.filter(account_id=self.account_id).exclude(free=0, locked=0)
        traded = Instrument.objects.filter(
            pk__in=PaperOrder.objects.filter(account_id=self.account_id).values("instrument_id")
        )
        symbols = {base_quote(i)[0]: i.symbol for i in traded}
        quotes = {base_quote(i)[1] for i in traded}
        reports = []
        for row in rows:
            if row.asset not in symbols:
                if row.asset in quotes:
                    continue
                other = Instrument.objects.filter(base=row.asset).order_by("pk").first()
                if other is None:
                    continue
                symbols[row.asset] = other.symbol
            reports.append(PositionReport(symbol=symbols[row.asset], quantity=row.free + row.locked))
        return reports

    # --- orders

    def submit(self, request: OrderRequest) -> OrderState:
        """Accept an order into the book (module docstring). Raises InvalidOrderError,
        InsufficientFundsError; an existing client order id returns that order."""
        with transaction.atomic():
            account = _paper_account(self.account_id, lock=True)
            existing = self._find(request.client_order_id)
            if existing is not None:
                return _state(existing)
            order = self._accept(account, request)
        return _state(PaperOrder.objects.prefetch_related("fills").get(pk=order.pk))

    def accept_locked(self, request: OrderRequest, *, account: TradingAccount, instrument: Instrument) -> OrderState:
        """Accept an order into the book inside the caller's transaction, which holds this
        account's row lock (``select_for_update``) and has just written the order's only row
        under its client order id: the execution service's paper path, where the order and the
        venue's acceptance commit together. ``instrument`` is the one ``request.symbol`` names.
        Raises as ``submit`` does and writes nothing then; wrap the call in a savepoint if the
        transaction is to go on after an error."""
        if account.pk != self.account_id:
            raise PermanentBrokerError("The order is for another paper account.", code="no_account")
        self._instruments.setdefault(request.symbol, instrument)
        order = self._accept(account, request)
        if request.time_in_force == "IOC":
            return _state(PaperOrder.objects.prefetch_related("fills").get(pk=order.pk))
        return _state(order, fills=())

    def _find(self, client_order_id: str) -> PaperOrder | None:
        return (
            PaperOrder.objects.prefetch_related("fills")
            .filter(account_id=self.account_id, client_order_id=client_order_id)
            .first()
        )

    def _accept(self, account: TradingAccount, request: OrderRequest) -> PaperOrder:
        if not request.client_order_id or len(request.client_order_id) > 40:
            raise InvalidOrderError("A client order id of 1 to 40 characters is required.")
        if request.type not in ORDER_TYPES or request.side not in ("buy", "sell"):
            raise InvalidOrderError(f"The paper venue does not take a {request.side} {request.type} order.")
        if request.time_in_force not in TIME_IN_FORCE:
            raise InvalidOrderError(f"time_in_force must be one of {', '.join(TIME_IN_FORCE)}.")
        if request.time_in_force == "IOC" and request.type != "market":
            raise InvalidOrderError("Only a market order can be immediate-or-cancel (IOC) here.")
        try:
            costs = paper_costs(account.connection)
        except InvalidSettingsError as exc:
            raise PermanentBrokerError(f"The paper account's cost settings are invalid: {exc.message}") from exc
        instrument = self.instrument(request.symbol)
        timeframe = self._timeframe(instrument, request.timeframe)
        last = (
            Candle.objects.filter(instrument=instrument, timeframe=timeframe)
            .order_by("-ts")
            .values("ts", "close")
            .first()
        )
        _check_sizing(request.sizing, request.attached)
        price_estimate = self._check_rules(instrument, request, last)
        asset, amount = self._reservation(instrument, request, price_estimate, costs)
        if amount > 0:
            # One statement reserves the funds if they are there (the account lock orders us).
            reserved = PaperBalance.objects.filter(account=account, asset=asset, free__gte=amount).update(
                free=F("free") - amount, locked=F("locked") + amount
            )
            if not reserved:
                free = PaperBalance.objects.filter(account=account, asset=asset).values_list("free", flat=True).first()
                free = free if free is not None else Decimal(0)
                raise InsufficientFundsError(
                    f"Insufficient {asset}: the order needs {amount.normalize():f}, free {free.normalize():f}."
                )
        order = PaperOrder.objects.create(
            account=account,
            client_order_id=request.client_order_id,
            instrument=instrument,
            symbol=instrument.symbol,
            side=request.side,
            type=request.type,
            quantity=request.quantity or Decimal(0),
            quote_quantity=request.quote_quantity,
            price=request.price,
            stop_price=request.stop_price,
            reduce_only=request.reduce_only,
            sizing=dict(request.sizing) if request.sizing is not None else None,
            attached=dict(request.attached) if request.attached else None,
            timeframe=timeframe,
            time_in_force=request.time_in_force,
            accepted_bar_ts=last["ts"] if last else None,
            locked_asset=asset if amount > 0 else "",
            locked_amount=amount if amount > 0 else Decimal(0),
        )
        order.exchange_order_id = f"P{order.pk}"
        PaperOrder.objects.filter(pk=order.pk).update(exchange_order_id=order.exchange_order_id)
        if request.time_in_force == "IOC":
            self._fill_now(account, order, instrument, timeframe)
        return order

    def _fill_now(self, account: TradingAccount, order: PaperOrder, instrument: Instrument, timeframe: str) -> None:
        """An IOC market order fills at once at the series' newest close (apps.accounts.paper_immediate)."""
        from apps.accounts.paper_immediate import last_bar, paper_fill_now

        bar = last_bar(instrument=instrument, timeframe=timeframe)
        if bar is None:  # _check_rules needed a price already; kept for a series emptied meanwhile
            raise InvalidOrderError(f"No candles of {instrument.symbol} {timeframe} to fill a market order at.")
        paper_fill_now(accounts=[account], orders=[order], instrument=instrument, timeframe=timeframe, bar=bar)

    def _check_rules(self, instrument: Instrument, request: OrderRequest, last: Mapping[str, Any] | None) -> Decimal:
        """Validate prices and size against the instrument; the price estimate of the order."""
        if request.type in ("limit", "stop_limit") and not (request.price and request.price > 0):
            raise InvalidOrderError(f"A {request.type} order needs a positive limit price.")
        if request.type in STOP_TYPES and not (request.stop_price and request.stop_price > 0):
            raise InvalidOrderError(f"A {request.type} order needs a positive stop price.")
        for label, value in (("price", request.price), ("stop price", request.stop_price)):
            if value is not None and not _on_grid(value, instrument.tick_size):
                raise InvalidOrderError(
                    f"The {label} {value} is not on the tick size {instrument.tick_size.normalize():f}.",  # type: ignore[union-attr]
                    code="tick_size",
                )
        if request.quote_quantity is not None and not (request.type == "market" and request.side == "buy"):
            raise InvalidOrderError("quote_quantity is for market buys only.")
        if request.quote_quantity is not None and request.quote_quantity <= 0:
            raise InvalidOrderError("quote_quantity must be positive.")
        estimate = request.price or request.stop_price
        if estimate is None:
            if last is None:
                raise InvalidOrderError(f"There is no price of {instrument.symbol} yet to place a market order at.")
            estimate = Decimal(str(last["close"]))
        if request.sizing is not None or request.quote_quantity is not None:
            return estimate
        rules = self.market_rules(request.symbol)
        if request.quantity is None or not _on_grid(request.quantity, instrument.lot_size):
            raise InvalidOrderError(
                f"The quantity {request.quantity} is not a whole number of lots of {instrument.lot_size}.",
                code="lot_size",
            )
        problem = rules.check(request.quantity, None if request.reduce_only else estimate)
        if problem:
            raise InvalidOrderError(problem, code="below_minimum")
        return estimate

    def _reservation(
        self, instrument: Instrument, request: OrderRequest, estimate: Decimal, costs: CostSettings
    ) -> tuple[str, Decimal]:
        """(asset, amount) the order reserves until it fills or ends."""
        base, quote = base_quote(instrument)
        if request.reduce_only:
            return "", Decimal(0)
        if request.side == "buy":
            if request.sizing is not None:
                return quote, Decimal(str(request.sizing["equity"]))
            if request.quote_quantity is not None:
                return quote, request.quote_quantity
            rate = Decimal(str(max(costs.taker_rate, costs.maker_rate, 0.0)))
            slip = Decimal(str(costs.slippage_bps)) / 10_000 if costs.slippage == "fixed_bps" else Decimal(0)
            amount = request.quantity * estimate * (1 + slip) * (1 + rate) + Decimal(str(costs.fee_fixed))
            return quote, amount.quantize(Decimal("1e-10"))
        if self.capabilities.shorting:
            return "", Decimal(0)
        if request.sizing is not None:
            raise InvalidOrderError("A sized sell needs shorting, which this paper account does not allow.")
        return base, request.quantity

    def cancel(self, client_order_id: str, symbol: str) -> OrderState:
        """Cancel a resting order (and the rest of its OCO group, as venues cancel an OCO list
        together); a finished order comes back as it is."""
        changed: list[str] = []
        with transaction.atomic():
            _paper_account(self.account_id, lock=True)
            order = self._find(client_order_id)
            if order is None:
                raise OrderNotFoundError(f"The paper venue has no order {client_order_id}.")
            if order.status in ACTIVE:
                group = [order]
                if order.oco_group:
                    group = list(
                        PaperOrder.objects.filter(
                            account_id=self.account_id, oco_group=order.oco_group, status__in=ACTIVE
                        ).order_by("pk")
                    )
                for member in group:
                    self._close(member, "cancelled")
                    changed.append(member.client_order_id)
                others = [c for c in changed if c != client_order_id]
                if others:
                    account_id = self.account_id
                    transaction.on_commit(lambda: paper_orders_announce({account_id: others}))
        found = self._find(client_order_id)
        assert found is not None
        return _state(found)

    def _close(self, order: PaperOrder, reason: str) -> None:
        """Cancel an active order and release its reservation (inside the account lock)."""
        if order.locked_amount and order.locked_asset:
            balance = PaperBalance.objects.select_for_update().get(
                account_id=order.account_id, asset=order.locked_asset
            )
            balance.locked -= order.locked_amount
            balance.free += order.locked_amount
            balance.save(update_fields=["free", "locked"])
        PaperOrder.objects.filter(pk=order.pk).update(
            status=PaperOrder.Status.CANCELLED, reason=reason, locked_amount=0, updated_at=timezone.now()
        )

    def fetch_order(self, client_order_id: str, symbol: str) -> OrderState:
        order = self._find(client_order_id)
        if order is None:
            raise OrderNotFoundError(f"The paper venue has no order {client_order_id}.")
        return _state(order)

    def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        qs = PaperOrder.objects.filter(account_id=self.account_id, status__in=ACTIVE)
        if symbol:
            qs = qs.filter(instrument=self.instrument(symbol))
        return [_state(o) for o in qs.prefetch_related("fills").order_by("pk")]

    def fetch_fills(self, symbol: str, since: datetime | None = None) -> list[FillReport]:
        qs = PaperFill.objects.filter(order__account_id=self.account_id, order__instrument=self.instrument(symbol))
        if since is not None:
            qs = qs.filter(filled_at__gte=since)
        return [_fill_report(f) for f in qs.order_by("filled_at", "pk")]

    def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: datetime | None = None, limit: int | None = None
    ) -> list[tuple[datetime, Decimal, Decimal, Decimal, Decimal, Decimal]]:
        """Candles of the paper venue: the platform's own candle store."""
        if timeframe not in TIMEFRAMES:
            raise InvalidOrderError(f"Unknown timeframe {timeframe!r}.")
        frame = candles_frame(self.instrument(symbol), timeframe, start=since, limit=limit)
        return [
            (ts.to_pydatetime(), *(Decimal(repr(float(v))) for v in row))
            for ts, row in zip(frame.index, frame[["open", "high", "low", "close", "volume"]].to_numpy(), strict=True)
        ]


# --- Services of the paper venue ----------------------------------------------------------------


@transaction.atomic
def paper_account_fund(*, account: TradingAccount, balances: Mapping[str, Decimal]) -> list[Balance]:
    """Set the free balance of each given asset of a paper account (starting balances, or a
    top-up); other assets and what resting orders reserve are untouched. Idempotent.
    Raises ValidationFailed for a non-paper account, an empty asset name or a negative amount."""
    if account.kind != TradingAccount.Kind.PAPER:
        raise ValidationFailed("Only paper accounts can be funded.", code="not_paper")
    cleaned: dict[str, Decimal] = {}
    for asset, amount in balances.items():
        name = str(asset).strip().upper()
        value = decimal_or_none(amount)
        if not name or len(name) > 20:
            raise ValidationFailed("An asset name of 1 to 20 characters is needed.", extra={"fields": {"balances": []}})
        if value is None or value < 0 or value >= Decimal("1e17"):
            raise ValidationFailed(
                f"The balance of {name} must be a number from 0 up to 10^17.", extra={"fields": {"balances": [name]}}
            )
        cleaned[name] = value.quantize(Decimal("1e-10"))
    _paper_account(int(account.pk), lock=True)
    for name, value in cleaned.items():
        row, created = PaperBalance.objects.get_or_create(account=account, asset=name, defaults={"free": value})
        if not created:
            row.free = value
            row.save(update_fields=["free"])
    return _balances(int(account.pk))


@transaction.atomic
def paper_replace_stop(*, account_id: int, client_order_id: str, stop_price: Decimal) -> OrderState:
    """Move a resting stop (or untriggered stop-limit) to ``stop_price`` in place, same id:
    trailing and break-even stops emulated by the execution layer. Raises OrderNotFoundError,
    InvalidOrderError (not a resting stop, a price off the tick)."""
    _paper_account(account_id, lock=True)
    order = (
        PaperOrder.objects.select_related("instrument")
        .filter(account_id=account_id, client_order_id=client_order_id)
        .first()
    )
    if order is None:
        raise OrderNotFoundError(f"The paper venue has no order {client_order_id}.")
    if order.status not in ACTIVE or order.type not in STOP_TYPES or order.is_triggered:
        raise InvalidOrderError(f"{client_order_id} is not a resting stop ({order.status} {order.type}).")
    price = decimal_or_none(stop_price)
    if price is None or price <= 0 or not _on_grid(price, order.instrument.tick_size):
        raise InvalidOrderError(f"The stop price {stop_price} is not a positive price on the tick grid.")
    order.stop_price = price
    order.updated_at = timezone.now()
    PaperOrder.objects.filter(pk=order.pk).update(stop_price=price, updated_at=order.updated_at)
    return _state(PaperOrder.objects.prefetch_related("fills").get(pk=order.pk))
