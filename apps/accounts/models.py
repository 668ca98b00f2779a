"""Trading accounts and the paper venue's book.

A TradingAccount is a user's connection to a venue: the built-in paper broker, a ccxt exchange
or Interactive Brokers. Credentials are one MultiFernet token (`apps.accounts.crypto`), never
shown, logged or serialised; `credentials_hint` is the masked form shown instead.

The paper venue keeps its book here (PaperBalance, PaperOrder, PaperFill): `apps.accounts.paper`
is a Broker whose "exchange" is these tables, filled against the candle feed.
"""

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models

from apps.common.models import TimeStampedModel

MONEY: dict[str, Any] = {"max_digits": 28, "decimal_places": 10}


class TradingAccount(TimeStampedModel):
    class Kind(models.TextChoices):
        PAPER = "paper", "Paper (simulated)"
        CCXT = "ccxt", "Exchange (ccxt)"
        IB = "ib", "Interactive Brokers"

    class MarketType(models.TextChoices):
        SPOT = "spot", "Spot"
        MARGIN = "margin", "Margin"
        FUTURE = "future", "Futures / perpetual swaps"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        NEEDS_RECONNECT = "needs_reconnect", "Needs reconnecting"
        DISABLED = "disabled", "Disabled"

    class TradingState(models.TextChoices):
        ACTIVE = "active", "Trading"
        REDUCE_ONLY = "reduce_only", "Reduce only"
        HALTED = "halted", "Halted"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="trading_accounts")
    name = models.CharField(max_length=80)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    exchange_id = models.CharField(
        max_length=40, blank=True, help_text="ccxt exchange id (binance, kraken, …); 'ib' or 'paper' for the others."
    )
    market_type = models.CharField(max_length=8, choices=MarketType.choices, default=MarketType.SPOT)
    is_testnet = models.BooleanField(default=False, help_text="Use the venue's sandbox / testnet.")
    base_currency = models.CharField(max_length=12, default="USDT", help_text="Currency P&L and limits are counted in.")
    connection = models.JSONField(
        default=dict,
        blank=True,
        help_text="Non-secret connection settings: IB host, port, client id, account code; ccxt options.",
    )
    credentials_encrypted = models.TextField(blank=True, editable=False)
    credentials_hint = models.CharField(max_length=80, blank=True, help_text="Masked, e.g. 'key …a1b2'.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    status_reason = models.CharField(max_length=500, blank=True)
    trading_state = models.CharField(
        max_length=12, choices=TradingState.choices, default=TradingState.ACTIVE, db_index=True
    )
    trading_state_reason = models.CharField(max_length=500, blank=True)
    risk_limits = models.JSONField(
        default=dict,
        blank=True,
        help_text="Account-wide limits (apps.trades.risk.limits.AccountLimits): exposure, per symbol, positions.",
    )
    last_tested_at = models.DateTimeField(null=True, blank=True)
    last_test = models.JSONField(
        default=dict, blank=True, help_text="The last connection test: ok, balances, permissions."
    )
    last_reconciled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="account_name_unique_per_owner")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    @property
    def is_live(self) -> bool:
        """Real money: every kind but paper (a testnet key still needs a fresh factor to add)."""
        return self.kind != self.Kind.PAPER


class PaperBalance(models.Model):
    """One asset of a paper account. `free` + `locked` is what the account holds; `locked` backs
    resting orders."""

    account = models.ForeignKey(TradingAccount, on_delete=models.CASCADE, related_name="paper_balances")
    asset = models.CharField(max_length=20)
    free = models.DecimalField(**MONEY, default=Decimal(0))
    locked = models.DecimalField(**MONEY, default=Decimal(0))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "asset"], name="paper_balance_unique")]

    def __str__(self) -> str:
        return f"{self.asset} {self.free}+{self.locked}"


class PaperOrder(TimeStampedModel):
    """An order resting at (or done by) the paper venue. Unique per account on the client
    order id: submitting the same id twice returns the existing order."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PARTIALLY_FILLED = "partially_filled", "Partially filled"
        FILLED = "filled", "Filled"
        CANCELLED = "cancelled", "Cancelled"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"

    account = models.ForeignKey(TradingAccount, on_delete=models.CASCADE, related_name="paper_orders")
    client_order_id = models.CharField(max_length=40)
    exchange_order_id = models.CharField(max_length=40, blank=True)
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, related_name="+")
    symbol = models.CharField(max_length=40)
    side = models.CharField(max_length=4)
    type = models.CharField(max_length=12)
    quantity = models.DecimalField(**MONEY)
    quote_quantity = models.DecimalField(**MONEY, null=True, blank=True)
    price = models.DecimalField(**MONEY, null=True, blank=True)
    stop_price = models.DecimalField(**MONEY, null=True, blank=True)
    is_triggered = models.BooleanField(default=False, help_text="A stop-limit whose stop has triggered.")
    reduce_only = models.BooleanField(default=False)
    sizing = models.JSONField(null=True, blank=True, help_text="Engine sizing inputs when sized at the fill.")
    attached = models.JSONField(
        null=True, blank=True, help_text="Bracket exits placed when this entry fills: stop/target fractions or prices."
    )
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    oco_group = models.CharField(
        max_length=40, blank=True, help_text="Orders of one group cancel each other on a fill."
    )
    timeframe = models.CharField(max_length=4, help_text="The candle series this order is matched against.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN, db_index=True)
    filled_quantity = models.DecimalField(**MONEY, default=Decimal(0))
    average_price = models.DecimalField(**MONEY, null=True, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    accepted_bar_ts = models.DateTimeField(
        null=True, blank=True, help_text="The newest closed bar when accepted: fills start with the bar after it."
    )
    time_in_force = models.CharField(
        max_length=4, default="GTC", help_text="GTC: rests until filled or cancelled; GTB: expires after one bar."
    )
    locked_asset = models.CharField(max_length=20, blank=True, help_text="The balance this order reserves.")
    locked_amount = models.DecimalField(
        **MONEY, default=Decimal(0), help_text="How much of locked_asset it reserves (released on fill or cancel)."
    )

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["account", "client_order_id"], name="paper_order_client_id_unique")
        ]
        indexes = [models.Index(fields=["instrument", "status"], name="paper_order_resting")]

    def __str__(self) -> str:
        return self.client_order_id


class PaperFill(models.Model):
    order = models.ForeignKey(PaperOrder, on_delete=models.CASCADE, related_name="fills")
    trade_id = models.CharField(max_length=40, unique=True)
    quantity = models.DecimalField(**MONEY)
    price = models.DecimalField(**MONEY)
    fee = models.DecimalField(**MONEY)
    fee_currency = models.CharField(max_length=20)
    is_maker = models.BooleanField(default=False)
    filled_at = models.DateTimeField()

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.trade_id
