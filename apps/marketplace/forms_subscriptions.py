"""The subscribe form (and, without the account and the open-positions choice, the form that edits
a subscription's allocation, sizing and limits).

The account list holds only the user's own active trading accounts, so a posted id of someone
else's account is refused by the form itself ("Select a valid choice"). Everything else is
validated by the subscription services; :meth:`SubscriptionForm.add_service_error` shows each
refusal at the input it names (``extra["field"]`` or ``extra["fields"]``), or above the form.
"""

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from django import forms

from apps.accounts.models import TradingAccount
from apps.common.errors import ApplicationError
from apps.marketplace.models import Subscription

POSITIVE = Decimal("0.0000000001")


def _money(label: str, help_text: str = "", *, required: bool = False) -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        help_text=help_text,
        required=required,
        min_value=POSITIVE,
        max_digits=28,
        decimal_places=10,
        widget=forms.NumberInput(attrs={"step": "any"}),
    )


class SubscriptionForm(forms.Form):
    account = forms.TypedChoiceField(coerce=int, label="Trading account", help_text="The account the copies trade on.")
    allocation = _money("Allocation", "The most capital the copies may use.", required=True)
    sizing_mode = forms.ChoiceField(choices=Subscription.Sizing.choices, label="Position size")
    multiplier = _money("Multiplier", "Multiplier mode: x the leader's quantity.")
    fixed_notional = _money("Notional per trade", "Fixed-notional mode: the value of each copied entry.")
    max_loss = _money("Maximum loss", "Copying stops when the copies have lost this much. Blank = none.")
    max_position_notional = _money("Maximum position value", "Blank = no limit.")
    max_price_deviation_pct = forms.DecimalField(
        label="Price-deviation guard %",
        help_text="Skip a copy when the price has moved more than this from the leader's fill. Blank = none.",
        required=False,
        min_value=Decimal(0),
        max_digits=7,
        decimal_places=3,
        widget=forms.NumberInput(attrs={"step": "any"}),
    )
    open_existing = forms.BooleanField(
        required=False, label="Open the leader's current positions when I join", help_text="Else only new trades."
    )
    show_identity = forms.BooleanField(
        required=False, label="Let the leader see who I am", help_text="Else you appear as “Follower #n”."
    )

    EDIT_FIELDS = (
        "allocation",
        "sizing_mode",
        "multiplier",
        "fixed_notional",
        "max_loss",
        "max_position_notional",
        "max_price_deviation_pct",
        "show_identity",
    )
    FIELD_OF = {"account_id": "account", "trading_account": "account", "listing": None, "listing_id": None}
    SHOW_WHEN = {"multiplier": "multiplier", "fixed_notional": "fixed_notional"}

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        accounts: Iterable[TradingAccount] = (),
        editing: bool = False,
        initial: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            data, initial={"sizing_mode": Subscription.Sizing.EQUITY_RATIO, "multiplier": 1, **(initial or {})}
        )
        self.editing = editing
        if editing:
            for name in ("account", "open_existing"):
                del self.fields[name]
        else:
            account = self.fields["account"]
            assert isinstance(account, forms.ChoiceField)
            account.choices = [("", "Choose an account…")] + [(a.pk, str(a)) for a in accounts]

    def rows(self) -> list[tuple[forms.BoundField, str]]:
        """Each input with the sizing mode it belongs to ("" = always shown)."""
        return [(self[name], self.SHOW_WHEN.get(name, "")) for name in self.fields]

    def service_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of subscription_create (or subscription_update when editing)."""
        data = self.cleaned_data
        kwargs: dict[str, Any] = {name: data.get(name) for name in self.EDIT_FIELDS}
        kwargs["show_identity"] = bool(data.get("show_identity"))
        if kwargs["multiplier"] is None:
            kwargs["multiplier"] = Decimal(1)
        if not self.editing:
            kwargs["account_id"] = data["account"]
            kwargs["open_existing"] = bool(data.get("open_existing"))
        return kwargs

    def _target(self, path: str) -> str | None:
        head = path.split(".", 1)[0]
        if head in self.FIELD_OF:
            head = self.FIELD_OF[head] or ""
        return head if head in self.fields else None

    def add_service_error(self, exc: ApplicationError) -> None:
        """Show a service's refusal at its input (the rest of what was typed stays)."""
        fields = exc.extra.get("fields")
        single = exc.extra.get("field")
        if not isinstance(fields, Mapping) or not fields:
            fields = {single: [exc.message]} if single else {}
        if not fields:
            self.add_error(None, exc.message)
            return
        for path, messages in fields.items():
            target = self._target(str(path))
            for message in [messages] if isinstance(messages, str) else list(messages):
                self.add_error(target, str(message))


def subscription_initial(subscription: Subscription) -> dict[str, Any]:
    def plain(value: Decimal | None) -> Decimal | None:
        return None if value is None else value.normalize()

    return {
        "allocation": plain(subscription.allocation),
        "sizing_mode": subscription.sizing_mode,
        "multiplier": plain(subscription.multiplier),
        "fixed_notional": plain(subscription.fixed_notional),
        "max_loss": plain(subscription.max_loss),
        "max_position_notional": plain(subscription.max_position_notional),
        "max_price_deviation_pct": plain(subscription.max_price_deviation_pct),
        "show_identity": subscription.show_identity,
    }
