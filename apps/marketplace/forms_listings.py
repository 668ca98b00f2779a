"""Forms of the listing pages: the marketplace filters, publishing / editing a listing, and a
review. They only parse; the services validate and decide (a service error lands on the field
it names, see `ServiceErrorsMixin`)."""

from collections.abc import Mapping
from typing import Any

from django import forms

from apps.common.errors import ApplicationError
from apps.marketplace.models import Listing
from apps.marketplace.selectors.listings import SORTS
from apps.strategies.models import Deployment

SORT_LABELS = {
    "return": "Return",
    "drawdown": "Smallest drawdown",
    "sharpe": "Sharpe",
    "followers": "Followers",
    "age": "Oldest track record",
    "newest": "Newest",
}


class ServiceErrorsMixin(forms.Form):
    def add_service_error(self, exc: ApplicationError) -> None:
        fields = exc.extra.get("fields")
        if not isinstance(fields, Mapping) or not fields:
            self.add_error(None, exc.message)
            return
        for name, messages in fields.items():
            target = name if name in self.fields else None
            for message in [messages] if isinstance(messages, str) else list(messages):
                self.add_error(target, str(message) if target else f"{name}: {message}")


class MarketplaceFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=100, label="Search")
    asset_class = forms.ChoiceField(
        required=False, choices=[("", "Any asset class"), *Listing.AssetClass.choices], label="Asset class"
    )
    risk_level = forms.ChoiceField(required=False, choices=[("", "Any risk"), *Listing.Risk.choices], label="Risk")
    pricing = forms.ChoiceField(
        required=False, choices=[("", "Any price"), ("free", "Free"), ("paid", "Paid")], label="Pricing"
    )
    live_only = forms.BooleanField(required=False, label="Live only")
    sort = forms.ChoiceField(required=False, choices=[(key, SORT_LABELS[key]) for key in SORTS], label="Sort by")

    def filters(self) -> dict[str, Any]:
        return dict(self.cleaned_data) if self.is_valid() else {}


class ListingForm(ServiceErrorsMixin):
    deployment_id = forms.TypedChoiceField(coerce=int, label="Deployment", required=True)
    title = forms.CharField(max_length=120)
    description = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 8}), help_text="Markdown: **bold**, lists, links."
    )
    tags = forms.CharField(required=False, max_length=300, help_text="Comma-separated, e.g. trend, btc, swing.")
    asset_class = forms.ChoiceField(choices=Listing.AssetClass.choices, initial=Listing.AssetClass.CRYPTO)
    risk_level = forms.ChoiceField(choices=Listing.Risk.choices, initial=Listing.Risk.MEDIUM, label="Risk level")
    min_allocation = forms.DecimalField(
        min_value=0, max_digits=28, decimal_places=10, initial=0, label="Minimum allocation"
    )
    monthly_fee = forms.DecimalField(
        min_value=0, max_digits=28, decimal_places=10, initial=0, help_text="Per subscriber and month; 0 = none."
    )
    performance_fee_pct = forms.DecimalField(
        min_value=0,
        max_value=50,
        max_digits=5,
        decimal_places=2,
        initial=0,
        label="Performance fee (%)",
        help_text="Of new equity highs; 0 = none.",
    )
    trade_delay_minutes = forms.IntegerField(
        min_value=0, initial=0, label="Trade delay (minutes)", help_text="Non-subscribers see your trades this late."
    )

    def __init__(self, *args: Any, deployments: list[Deployment] | None = None, editing: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if editing:
            del self.fields["deployment_id"]
        else:
            choice_field = self.fields["deployment_id"]
            assert isinstance(choice_field, forms.TypedChoiceField)
            choice_field.choices = [
                (d.pk, f"{d.name} · {d.get_status_display()} · {d.account.name}") for d in deployments or []
            ]

    def service_kwargs(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["tags"] = [t for t in (data.get("tags") or "").split(",") if t.strip()]
        return data


def listing_initial(listing: Listing) -> dict[str, Any]:
    return {
        "title": listing.title,
        "description": listing.description,
        "tags": ", ".join(listing.tags or []),
        "asset_class": listing.asset_class,
        "risk_level": listing.risk_level,
        "min_allocation": f"{listing.min_allocation.normalize():f}",
        "monthly_fee": f"{listing.monthly_fee.normalize():f}",
        "performance_fee_pct": f"{listing.performance_fee_pct.normalize():f}",
        "trade_delay_minutes": listing.trade_delay_minutes,
    }


class ReviewForm(ServiceErrorsMixin):
    rating = forms.TypedChoiceField(coerce=int, choices=[(i, f"{i} ★") for i in range(5, 0, -1)])
    text = forms.CharField(required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 3}), label="Review")
