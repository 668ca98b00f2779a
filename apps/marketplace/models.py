r"""The strategy marketplace and copy trading.

- Listing: a leader's running deployment offered to followers. Review states
  draft -> pending -> approved | rejected (with a reason) -> suspended, moved by staff. The
  ``stats_*`` columns are the verified track record, written only by
  ``services.track_record.listing_stats_refresh`` from the deployment's own fills and prices,
  never from anything the leader types; they exist so the marketplace can sort and filter in SQL.
- Subscription: a follower's trading account copying a listing. Its copied positions, orders,
  fills and P&L live in a follower-owned Deployment of kind ``copy`` (``Subscription.deployment``),
  so the execution service, the risk checks, the per-deployment ledger and the kill switches
  apply to copies exactly as to a strategy's own orders. States: active -> paused -> active,
  active | paused -> stopped (the follower's maximum loss, a revoked key: copying stops, the
  subscription stays) -> ended (unsubscribed; terminal).
- CopyTrade: what one leader fill did for one subscription, UNIQUE(leader fill, subscription):
  the follower's order (client order id ``tpc<fill>.<subscription>``, unique per account), or
  why no order was placed (skipped by a guard, refused by a risk check, failed at the venue).
- FeeEntry: the fee ledger of a subscription: monthly fees and high-water-mark performance
  fees, accrued per period (UNIQUE(subscription, kind, period_start)); collection is a payment
  provider's job (``services.fees.PaymentProvider``).
- Review: a 1-5 rating and text by a current or past subscriber, one per user and listing,
  editable, hidden or shown by moderators.
"""

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from apps.common.models import TimeStampedModel

MONEY: dict[str, Any] = {"max_digits": 28, "decimal_places": 10}
ZERO = Decimal(0)


class Listing(TimeStampedModel):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PENDING = "pending", "Pending review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        SUSPENDED = "suspended", "Suspended"

    class AssetClass(models.TextChoices):
        CRYPTO = "crypto", "Crypto"
        STOCKS = "stocks", "Stocks"
        FUTURES = "futures", "Futures"
        FOREX = "forex", "Forex"
        MIXED = "mixed", "Mixed"

    class Risk(models.TextChoices):
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="listings")
    deployment = models.OneToOneField("strategies.Deployment", on_delete=models.PROTECT, related_name="listing")
    title = models.CharField(max_length=120)
    description = models.TextField(blank=True, help_text="Markdown, as the leader wrote it.")
    description_html = models.TextField(blank=True, editable=False, help_text="Rendered and sanitised.")
    tags = models.JSONField(default=list, blank=True)
    asset_class = models.CharField(max_length=8, choices=AssetClass.choices, default=AssetClass.CRYPTO)
    risk_level = models.CharField(max_length=6, choices=Risk.choices, default=Risk.MEDIUM)
    currency = models.CharField(max_length=12, default="USDT", help_text="The leader account's base currency.")
    min_allocation = models.DecimalField(**MONEY, default=ZERO)
    monthly_fee = models.DecimalField(**MONEY, default=ZERO, help_text="Per subscription and month; 0 = none.")
    performance_fee_pct = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=ZERO,
        validators=[MinValueValidator(ZERO), MaxValueValidator(Decimal(50))],
        help_text="Percent of new equity highs (high-water mark); 0 = none.",
    )
    trade_delay_minutes = models.PositiveIntegerField(
        default=0, help_text="Recent trades are shown to non-subscribers only this long after they happened."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT, db_index=True)
    status_reason = models.CharField(max_length=500, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The verified track record (see the module docstring): written by the track-record service only.
    is_live = models.BooleanField(default=False, editable=False, help_text="Trades real money (else paper).")
    stats_return = models.FloatField(null=True, blank=True, editable=False, help_text="Total return, fraction.")
    stats_max_drawdown = models.FloatField(null=True, blank=True, editable=False, help_text="Fraction, >= 0.")
    stats_sharpe = models.FloatField(null=True, blank=True, editable=False)
    stats_trades = models.PositiveIntegerField(default=0, editable=False)
    stats_followers = models.PositiveIntegerField(default=0, editable=False)
    stats_capital = models.DecimalField(**MONEY, default=ZERO, editable=False, help_text="Capital following.")
    stats_since = models.DateTimeField(null=True, blank=True, editable=False, help_text="First fill (age).")
    stats_updated_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status", "-stats_return"], name="listing_status_return")]

    def __str__(self) -> str:
        return self.title

    @property
    def is_free(self) -> bool:
        return self.monthly_fee == 0 and self.performance_fee_pct == 0

    @property
    def is_public(self) -> bool:
        return self.status == self.Status.APPROVED


class Subscription(TimeStampedModel):
    class Status(models.TextChoices):
        ACTIVE = "active", "Copying"
        PAUSED = "paused", "Paused"
        STOPPED = "stopped", "Stopped copying"
        ENDED = "ended", "Unsubscribed"

    class Sizing(models.TextChoices):
        MULTIPLIER = "multiplier", "Multiplier of the leader's size"
        EQUITY_RATIO = "equity_ratio", "Proportional to equity"
        FIXED_NOTIONAL = "fixed_notional", "Fixed notional per trade"

    LIVE_STATUSES = (Status.ACTIVE, Status.PAUSED, Status.STOPPED)

    listing = models.ForeignKey(Listing, on_delete=models.PROTECT, related_name="subscriptions")
    follower = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscriptions")
    account = models.ForeignKey("accounts.TradingAccount", on_delete=models.PROTECT, related_name="subscriptions")
    deployment = models.OneToOneField(
        "strategies.Deployment", on_delete=models.PROTECT, related_name="subscription", help_text="The copy book."
    )
    sizing_mode = models.CharField(max_length=14, choices=Sizing.choices, default=Sizing.EQUITY_RATIO)
    multiplier = models.DecimalField(**MONEY, default=Decimal(1), help_text="Multiplier mode: x the leader's size.")
    fixed_notional = models.DecimalField(**MONEY, null=True, blank=True, help_text="Fixed-notional mode: per trade.")
    allocation = models.DecimalField(**MONEY, help_text="Maximum allocation: the capital the copies may use.")
    max_loss = models.DecimalField(**MONEY, null=True, blank=True, help_text="Stop copying at this loss.")
    max_position_notional = models.DecimalField(**MONEY, null=True, blank=True)
    max_price_deviation_pct = models.DecimalField(
        max_digits=7, decimal_places=3, null=True, blank=True, help_text="Skip a copy when the price moved more."
    )
    open_existing = models.BooleanField(default=False, help_text="Open the leader's current positions on joining.")
    show_identity = models.BooleanField(default=False, help_text="The leader may see who this follower is.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    status_reason = models.CharField(max_length=500, blank=True)
    started_at = models.DateTimeField()
    copying_since = models.DateTimeField(
        null=True, blank=True, help_text="Leader fills from this moment are copied (set on subscribing and resuming)."
    )
    ended_at = models.DateTimeField(null=True, blank=True)
    # The fee terms the follower agreed to: a leader's later change of terms applies to new
    # subscribers only.
    monthly_fee = models.DecimalField(**MONEY, default=ZERO)
    performance_fee_pct = models.DecimalField(max_digits=5, decimal_places=2, default=ZERO)
    high_water_mark = models.DecimalField(**MONEY, null=True, blank=True, help_text="Equity high for performance fees.")

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["listing", "account"], condition=~Q(status="ended"), name="subscription_one_open_per_account"
            )
        ]
        indexes = [models.Index(fields=["listing", "status"], name="subscription_listing_status")]

    def __str__(self) -> str:
        return f"{self.account} copies {self.listing}"


class CopyTrade(models.Model):
    class Status(models.TextChoices):
        ORDERED = "ordered", "Order placed"
        SKIPPED = "skipped", "Skipped"
        REFUSED = "refused", "Refused by risk"
        FAILED = "failed", "Failed"

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="copies")
    leader_fill = models.ForeignKey("trades.Fill", on_delete=models.PROTECT, related_name="copies")
    order = models.OneToOneField(
        "trades.Order", null=True, blank=True, on_delete=models.PROTECT, related_name="copy_trade"
    )
    status = models.CharField(max_length=8, choices=Status.choices)
    code = models.CharField(max_length=40, blank=True, help_text="Stable reason code: price_deviation, max_loss, …")
    reason = models.CharField(max_length=500, blank=True)
    side = models.CharField(max_length=4)
    leader_quantity = models.DecimalField(**MONEY)
    leader_price = models.DecimalField(**MONEY)
    quantity = models.DecimalField(**MONEY, default=ZERO, help_text="The follower's order size (0 when none).")
    reference_price = models.DecimalField(**MONEY, null=True, blank=True, help_text="Price when the copy was sized.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["leader_fill", "subscription"], name="copy_trade_once_per_fill"),
        ]

    def __str__(self) -> str:
        return f"copy of fill {self.leader_fill_id} for subscription {self.subscription_id}: {self.status}"


class FeeEntry(models.Model):
    class Kind(models.TextChoices):
        MONTHLY = "monthly", "Monthly fee"
        PERFORMANCE = "performance", "Performance fee"

    class Status(models.TextChoices):
        ACCRUED = "accrued", "Accrued"
        COLLECTED = "collected", "Collected"
        WAIVED = "waived", "Waived"

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="fees")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    period_start = models.DateField()
    period_end = models.DateField()
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=12)
    equity = models.DecimalField(**MONEY, null=True, blank=True, help_text="Copy equity at the period's end.")
    high_water_mark_before = models.DecimalField(**MONEY, null=True, blank=True)
    high_water_mark_after = models.DecimalField(**MONEY, null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACCRUED)
    memo = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-period_start", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "kind", "period_start"], name="fee_once_per_period"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} {self.currency} ({self.period_start})"


class Review(TimeStampedModel):
    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="reviews")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="listing_reviews")
    rating = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(5)])
    text = models.TextField(blank=True, max_length=4000)
    is_hidden = models.BooleanField(default=False, help_text="Hidden by a moderator.")
    moderation_note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["listing", "author"], name="review_one_per_author"),
            models.CheckConstraint(condition=Q(rating__gte=1) & Q(rating__lte=5), name="review_rating_1_5"),
        ]

    def __str__(self) -> str:
        return f"{self.rating}/5 on {self.listing}"
