r"""Orders, fills, positions, the per-deployment ledger, risk refusals and the kill switches.

Order life (`Order.Status`):

    new -> sending -> open -> partially_filled -> filled
                   \-> rejected (the venue refused: terminal, never retried)
                   \-> unknown (sent, fate unknown: asked about until the venue answers)
    new -> rejected (refused before sending: risk, a venue rule)   open -> cancelled | expired

An order row is written before anything is sent, under UNIQUE(account, client_order_id); the
client order id is deterministic (`apps.trades.client_ids`), so a retried tick finds the row
instead of creating a second order. Money and quantities are Decimal.

Positions are per deployment (each deployment has its own ledger and P&L; manual orders book to
the account's manual position, deployment NULL) and per symbol: signed quantity, average entry,
realised P&L and fees. LedgerEntry is the append-only journal every change of cash comes from.
"""

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models

from apps.common.models import TimeStampedModel

MONEY: dict[str, Any] = {"max_digits": 28, "decimal_places": 10}
ZERO = Decimal(0)


class Order(TimeStampedModel):
    class Status(models.TextChoices):
        NEW = "new", "New"
        SENDING = "sending", "Sending"
        OPEN = "open", "Open"
        PARTIALLY_FILLED = "partially_filled", "Partially filled"
        FILLED = "filled", "Filled"
        CANCELLED = "cancelled", "Cancelled"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"
        UNKNOWN = "unknown", "Unknown (asking the venue)"

    class Side(models.TextChoices):
        BUY = "buy", "Buy"
        SELL = "sell", "Sell"

    class Type(models.TextChoices):
        MARKET = "market", "Market"
        LIMIT = "limit", "Limit"
        STOP = "stop", "Stop"
        STOP_LIMIT = "stop_limit", "Stop limit"

    class Source(models.TextChoices):
        STRATEGY = "strategy", "Strategy"
        MANUAL = "manual", "Manual"
        EXIT = "exit", "Protective exit"
        COPY = "copy", "Copy trading"
        WEBHOOK = "webhook", "Webhook signal"
        ALGO = "algo", "Execution algorithm child"

    class Algo(models.TextChoices):
        NONE = "", "None"
        BRACKET = "bracket", "Bracket (entry + OCO stop/target)"
        TRAILING = "trailing", "Trailing stop (emulated)"
        TWAP = "twap", "TWAP"
        ICEBERG = "iceberg", "Iceberg"

    account = models.ForeignKey("accounts.TradingAccount", on_delete=models.PROTECT, related_name="orders")
    deployment = models.ForeignKey(
        "strategies.Deployment", null=True, blank=True, on_delete=models.PROTECT, related_name="orders"
    )
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, related_name="+")
    symbol = models.CharField(max_length=40, help_text="The venue's unified symbol.")
    client_order_id = models.CharField(max_length=36)
    exchange_order_id = models.CharField(max_length=64, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.STRATEGY)
    leg = models.CharField(max_length=16, blank=True, help_text="entry, exit, stop, target, child-3, …")
    bar_ts = models.DateTimeField(null=True, blank=True, help_text="The closed bar whose signal made this order.")
    side = models.CharField(max_length=4, choices=Side.choices)
    type = models.CharField(max_length=12, choices=Type.choices)
    quantity = models.DecimalField(**MONEY)
    quote_quantity = models.DecimalField(**MONEY, null=True, blank=True)
    price = models.DecimalField(**MONEY, null=True, blank=True)
    stop_price = models.DecimalField(**MONEY, null=True, blank=True)
    reduce_only = models.BooleanField(default=False)
    expected_price = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="The price the order was decided at (slippage is measured from it)."
    )
    algo = models.CharField(max_length=10, choices=Algo.choices, blank=True, default="")
    algo_params = models.JSONField(default=dict, blank=True)
    # What order_send hands the venue beside the order itself (OrderRequest.sizing / attached /
    # timeframe): the paper venue sizes at the fill from `sizing`, places `bracket` exits
    # (with their client order ids) as an OCO pair, and matches against `timeframe` candles.
    sizing = models.JSONField(null=True, blank=True, help_text="Engine sizing inputs when the venue sizes at the fill.")
    bracket = models.JSONField(
        null=True,
        blank=True,
        help_text="Attached exits: stop_loss/take_profit fractions or stop_price/target_price, and their client ids.",
    )
    timeframe = models.CharField(max_length=4, blank=True, help_text="The candle series the paper venue matches.")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    oco_group = models.CharField(max_length=40, blank=True, db_index=True)
    status = models.CharField(max_length=18, choices=Status.choices, default=Status.NEW, db_index=True)
    status_reason = models.CharField(max_length=500, blank=True)
    filled_quantity = models.DecimalField(**MONEY, default=ZERO)
    average_price = models.DecimalField(**MONEY, null=True, blank=True)
    fees = models.DecimalField(**MONEY, default=ZERO)
    send_attempts = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    not_found_count = models.PositiveIntegerField(default=0)
    first_not_found_at = models.DateTimeField(null=True, blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["account", "client_order_id"], name="order_client_id_unique"),
        ]
        indexes = [
            models.Index(fields=["account", "status"], name="order_account_status"),
            models.Index(fields=["deployment", "-created_at"], name="order_deployment_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.client_order_id} {self.side} {self.quantity} {self.symbol} ({self.status})"

    OPEN_STATUSES = ("new", "sending", "open", "partially_filled", "unknown")
    TERMINAL_STATUSES = ("filled", "cancelled", "rejected", "expired")

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL_STATUSES


class Fill(models.Model):
    """One execution of an order, as the venue reported it. UNIQUE(order, trade_id): importing
    the same venue fill twice (a retried sync, reconciliation) records it once."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="fills")
    account = models.ForeignKey("accounts.TradingAccount", on_delete=models.PROTECT, related_name="+")
    deployment = models.ForeignKey(
        "strategies.Deployment", null=True, blank=True, on_delete=models.PROTECT, related_name="fills"
    )
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, related_name="+")
    trade_id = models.CharField(max_length=64)
    side = models.CharField(max_length=4, choices=Order.Side.choices)
    quantity = models.DecimalField(**MONEY)
    price = models.DecimalField(**MONEY)
    fee = models.DecimalField(**MONEY, default=ZERO)
    fee_currency = models.CharField(max_length=20, blank=True)
    is_maker = models.BooleanField(default=False)
    expected_price = models.DecimalField(**MONEY, null=True, blank=True)
    slippage_bps = models.DecimalField(
        max_digits=18, decimal_places=6, null=True, blank=True, help_text="Against the trader: positive = worse."
    )
    realized_pnl = models.DecimalField(**MONEY, default=ZERO, help_text="P&L this fill realised (before fees).")
    filled_at = models.DateTimeField(db_index=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-filled_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["order", "trade_id"], name="fill_trade_unique")]
        indexes = [models.Index(fields=["deployment", "-filled_at"], name="fill_deployment_recent")]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} @ {self.price}"


class Position(TimeStampedModel):
    """A deployment's (or the account's manual) holding in one symbol. `quantity` is signed."""

    account = models.ForeignKey("accounts.TradingAccount", on_delete=models.PROTECT, related_name="positions")
    deployment = models.ForeignKey(
        "strategies.Deployment", null=True, blank=True, on_delete=models.PROTECT, related_name="positions"
    )
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, related_name="+")
    symbol = models.CharField(max_length=40)
    quantity = models.DecimalField(**MONEY, default=ZERO)
    average_price = models.DecimalField(**MONEY, null=True, blank=True)
    realized_pnl = models.DecimalField(**MONEY, default=ZERO)
    fees = models.DecimalField(**MONEY, default=ZERO)
    opened_at = models.DateTimeField(null=True, blank=True)
    entry_bar_ts = models.DateTimeField(null=True, blank=True, help_text="Bar of the entry fill (time exits).")
    extreme_price = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="Best price since entry (trailing stop, break-even)."
    )
    stop_price = models.DecimalField(**MONEY, null=True, blank=True)
    target_price = models.DecimalField(**MONEY, null=True, blank=True)

    class Meta:
        ordering = ["account", "symbol"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "deployment", "instrument"],
                name="position_unique",
                nulls_distinct=False,
            )
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.quantity}"


class LedgerEntry(models.Model):
    """Append-only journal of a deployment's (or account's manual) cash: every fill posts its
    cash flow and its fee. Balance of a ledger = its capital + the sum of its entries."""

    class Kind(models.TextChoices):
        CAPITAL = "capital", "Capital allocated"
        TRADE = "trade", "Trade cash flow"
        FEE = "fee", "Fee"
        ADJUSTMENT = "adjustment", "Reconciliation adjustment"

    account = models.ForeignKey("accounts.TradingAccount", on_delete=models.PROTECT, related_name="+")
    deployment = models.ForeignKey(
        "strategies.Deployment", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger"
    )
    fill = models.ForeignKey(Fill, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    asset = models.CharField(max_length=20)
    amount = models.DecimalField(**MONEY)
    memo = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} {self.asset}"


class RiskEvent(models.Model):
    """A refusal by the risk manager (or a venue rule), or a limit reached, shown to the user."""

    class Kind(models.TextChoices):
        REFUSED = "refused", "Order refused"
        PAUSED = "paused", "Deployment paused"
        HALTED = "halted", "Trading halted"
        ALERT = "alert", "Alert"

    account = models.ForeignKey("accounts.TradingAccount", on_delete=models.CASCADE, related_name="risk_events")
    deployment = models.ForeignKey(
        "strategies.Deployment", null=True, blank=True, on_delete=models.CASCADE, related_name="risk_events"
    )
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="risk_events")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.REFUSED)
    code = models.CharField(max_length=40, help_text="Stable: max_position, daily_loss, kill_switch, min_notional, …")
    message = models.CharField(max_length=500)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class PlatformSwitch(models.Model):
    """The platform-wide kill switch: one row (pk=1). ACTIVE, REDUCE_ONLY or HALTED."""

    class Mode(models.TextChoices):
        ACTIVE = "active", "Trading"
        REDUCE_ONLY = "reduce_only", "Reduce only"
        HALTED = "halted", "Halted"

    mode = models.CharField(max_length=12, choices=Mode.choices, default=Mode.ACTIVE)
    reason = models.CharField(max_length=500, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "platform kill switch"
        verbose_name_plural = "platform kill switch"

    def __str__(self) -> str:
        return f"Platform: {self.get_mode_display()}"
