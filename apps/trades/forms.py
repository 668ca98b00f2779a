"""The portal's manual order form: one of the user's accounts, an instrument, side, type,
quantity, prices, an optional bracket (stop loss / take profit in %) and an optional TWAP or
iceberg. Shape is checked here; meaning (risk limits, venue rules) by the services, whose errors
are shown at the input they name with the other values kept."""

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django import forms

from apps.common.errors import ApplicationError
from apps.marketdata.models import Instrument
from apps.trades.models import Order

_TINY = Decimal("0.0000000001")


def _amount(**kwargs: Any) -> forms.DecimalField:
    return forms.DecimalField(max_digits=28, decimal_places=10, min_value=_TINY, **kwargs)


class ManualOrderForm(forms.Form):
    account = forms.TypedChoiceField(coerce=int, label="Account")
    instrument = forms.ModelChoiceField(queryset=Instrument.objects.none(), label="Instrument")
    side = forms.ChoiceField(choices=Order.Side.choices)
    type = forms.ChoiceField(choices=Order.Type.choices, initial=Order.Type.MARKET)
    quantity = _amount(help_text="Base units, rounded down to the instrument's step.")
    price = _amount(required=False, help_text="Limit price (limit, stop limit).")
    stop_price = _amount(required=False, help_text="Trigger price (stop, stop limit).")
    reduce_only = forms.BooleanField(required=False, help_text="Only ever lowers the position.")
    stop_loss_pct = forms.DecimalField(
        required=False, min_value=Decimal("0.01"), max_value=Decimal("99"), decimal_places=4, label="Stop loss (%)"
    )
    take_profit_pct = forms.DecimalField(
        required=False, min_value=Decimal("0.01"), max_value=Decimal("10000"), decimal_places=4, label="Take profit (%)"
    )
    algo = forms.ChoiceField(
        choices=[("", "None"), (Order.Algo.TWAP, "TWAP"), (Order.Algo.ICEBERG, "Iceberg")], required=False
    )
    slices = forms.IntegerField(required=False, min_value=2, max_value=500, help_text="TWAP: number of children.")
    interval_seconds = forms.IntegerField(
        required=False, min_value=1, max_value=86_400, help_text="TWAP: seconds apart."
    )
    visible = _amount(required=False, help_text="Iceberg: quantity shown at a time.")

    FIELD_MAP = {"algo.slices": "slices", "algo.interval_seconds": "interval_seconds", "algo.visible": "visible"}

    def __init__(self, *args: Any, accounts: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["account"].choices = [(a.pk, str(a)) for a in accounts]  # type: ignore[attr-defined]
        self.fields["instrument"].queryset = Instrument.objects.filter(is_active=True).order_by("venue", "symbol")  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("type")
        if kind in (Order.Type.LIMIT, Order.Type.STOP_LIMIT) and data.get("price") is None:
            self.add_error("price", "A limit order needs a price.")
        if kind in (Order.Type.STOP, Order.Type.STOP_LIMIT) and data.get("stop_price") is None:
            self.add_error("stop_price", "A stop order needs a stop price.")
        if kind in (Order.Type.MARKET, Order.Type.STOP) and data.get("price") is not None:
            self.add_error("price", "Leave empty: this order type has no limit price.")
        if kind in (Order.Type.MARKET, Order.Type.LIMIT) and data.get("stop_price") is not None:
            self.add_error("stop_price", "Leave empty: this order type has no stop price.")
        algo = data.get("algo")
        if algo == Order.Algo.TWAP:
            for name in ("slices", "interval_seconds"):
                if data.get(name) is None:
                    self.add_error(name, "A TWAP needs this.")
        if algo == Order.Algo.ICEBERG:
            visible, quantity = data.get("visible"), data.get("quantity")
            if visible is None:
                self.add_error("visible", "An iceberg needs the visible quantity.")
            elif quantity is not None and visible >= quantity:
                self.add_error("visible", "Must be below the quantity.")
        if (data.get("stop_loss_pct") or data.get("take_profit_pct")) and (data.get("reduce_only") or algo):
            self.add_error("stop_loss_pct", "A bracket goes with a plain entry (not reduce-only, no algo).")
        return data

    def order_data(self) -> dict[str, Any]:
        """The validated input in the API serializer's shape (for manual_order_place)."""
        d = self.cleaned_data
        bracket: dict[str, Any] = {}
        if d.get("stop_loss_pct"):
            bracket["stop_loss"] = float(d["stop_loss_pct"]) / 100
        if d.get("take_profit_pct"):
            bracket["take_profit"] = float(d["take_profit_pct"]) / 100
        algo = None
        if d.get("algo") == Order.Algo.TWAP:
            algo = {"kind": "twap", "slices": d["slices"], "interval_seconds": float(d["interval_seconds"])}
        elif d.get("algo") == Order.Algo.ICEBERG:
            algo = {"kind": "iceberg", "visible": d["visible"]}
        return {
            "account": d["account"],
            "instrument": d["instrument"].pk,
            "side": d["side"],
            "type": d["type"],
            "quantity": d["quantity"],
            "price": d.get("price"),
            "stop_price": d.get("stop_price"),
            "reduce_only": bool(d.get("reduce_only")),
            "bracket": bracket or None,
            "algo": algo,
        }

    def add_service_error(self, exc: ApplicationError) -> None:
        """Show a service's error at the input it names, else above the form (risk refusals)."""
        fields = exc.extra.get("fields")
        if not isinstance(fields, Mapping) or not fields:
            self.add_error(None, exc.message)
            return
        for path, messages in fields.items():
            name = self.FIELD_MAP.get(str(path), str(path).split(".", 1)[0])
            target = name if name in self.fields else None
            for message in [messages] if isinstance(messages, str) else list(messages):
                self.add_error(target, str(message) if target else f"{path}: {message}")


class OrderFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "Any status"), *Order.Status.choices], required=False)
    account = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)

    def __init__(self, *args: Any, accounts: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["account"].choices = [("", "All accounts"), *[(a.pk, str(a)) for a in accounts]]  # type: ignore[attr-defined]
