"""Portal forms of the accounts app. They check the shape of the input; the services check its
meaning and name the field of every error, which :meth:`ServiceErrorForm.add_service_error`
puts at that input (or at the top of the form).

Secrets (the exchange secret and passphrase) are password inputs that are never rendered back:
after an error the other values are kept and the secret is typed again.
"""

import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, ClassVar

from django import forms

from apps.accounts.models import TradingAccount
from apps.common.errors import ApplicationError

HUNDRED = Decimal(100)


@lru_cache(maxsize=1)
def exchange_choices() -> list[tuple[str, str]]:
    import ccxt

    return [("", "Choose an exchange")] + [(name, name) for name in sorted(ccxt.exchanges)]


class ServiceErrorForm(forms.Form):
    """A form that shows a service's ApplicationError at the input its field path names."""

    # service field path (or its first segment) -> form field
    FIELD_MAP: ClassVar[dict[str, str]] = {}

    def field_for_path(self, path: str) -> str | None:
        if path in self.FIELD_MAP:
            return self.FIELD_MAP[path]
        head = path.split(".", 1)[0]
        if head in self.FIELD_MAP:
            return self.FIELD_MAP[head]
        return head if head in self.fields else None

    def add_service_error(self, exc: ApplicationError) -> None:
        fields = exc.extra.get("fields")
        if not isinstance(fields, Mapping) or not fields:
            self.add_error(None, exc.message)
            return
        for path, messages in fields.items():
            target = self.field_for_path(str(path))
            for message in [messages] if isinstance(messages, str) else list(messages):
                text = str(message) if target is not None else f"{path}: {message}"
                self.add_error(target, text)


class PaperAccountForm(ServiceErrorForm):
    FIELD_MAP: ClassVar[dict[str, str]] = {
        "costs.fee": "fee",
        "costs.maker_fee": "maker_fee",
        "costs.slippage_bps": "slippage_bps",
        "costs": "fee",
    }

    name = forms.CharField(max_length=80, initial="Paper account")
    base_currency = forms.CharField(max_length=12, initial="USDT", help_text="P&L and limits are counted in it.")
    balances = forms.CharField(
        label="Starting balances",
        initial="USDT 10000",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One asset per line: code and amount, e.g. “USDT 10000” or “BTC 0.5”.",
    )
    fee = forms.DecimalField(
        label="Taker fee %", initial=Decimal("0.1"), min_value=Decimal(0), max_value=Decimal(10), decimal_places=6
    )
    maker_fee = forms.DecimalField(
        label="Maker fee %",
        required=False,
        min_value=Decimal(0),
        max_value=Decimal(10),
        decimal_places=6,
        help_text="Limit fills; blank = the taker fee.",
    )
    slippage_bps = forms.DecimalField(
        label="Slippage (basis points)",
        initial=Decimal(0),
        min_value=Decimal(0),
        max_value=Decimal(1000),
        decimal_places=4,
        help_text="Market and stop fills; 0 = none.",
    )

    def clean_balances(self) -> dict[str, str]:
        result: dict[str, str] = {}
        for number, line in enumerate(str(self.cleaned_data["balances"]).splitlines(), start=1):
            parts = line.replace("=", " ").replace(":", " ").split()
            if not parts:
                continue
            if len(parts) != 2:
                raise forms.ValidationError(f"Line {number}: write the asset and the amount, e.g. “USDT 10000”.")
            asset, amount = parts[0].upper(), parts[1].replace(",", "")
            try:
                value = Decimal(amount)
            except InvalidOperation:
                raise forms.ValidationError(f"Line {number}: “{parts[1]}” is not a number.") from None
            if not value.is_finite():
                raise forms.ValidationError(f"Line {number}: “{parts[1]}” is not a number.")
            if value < 0:
                raise forms.ValidationError(f"Line {number}: {asset} cannot start below 0.")
            result[asset] = amount
        if not result:
            raise forms.ValidationError("Give at least one starting balance.")
        return result

    def service_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        costs: dict[str, Any] = {"fee": float(data["fee"] / HUNDRED)}
        if data.get("maker_fee") is not None:
            costs["maker_fee"] = float(data["maker_fee"] / HUNDRED)
        if data["slippage_bps"]:
            costs.update(slippage="fixed_bps", slippage_bps=float(data["slippage_bps"]))
        return {
            "name": data["name"],
            "base_currency": data["base_currency"],
            "balances": {asset: Decimal(amount) for asset, amount in data["balances"].items()},
            "costs": costs,
        }


class ExchangeAccountForm(ServiceErrorForm):
    name = forms.CharField(max_length=80)
    exchange_id = forms.ChoiceField(label="Exchange", choices=exchange_choices)
    market_type = forms.ChoiceField(choices=TradingAccount.MarketType.choices, initial="spot")
    is_testnet = forms.BooleanField(label="Testnet / sandbox", required=False)
    api_key = forms.CharField(label="API key", max_length=512, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    secret = forms.CharField(
        label="API secret",
        max_length=512,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}, render_value=False),
        help_text="Stored encrypted and never shown again. Use a key without withdrawal permission.",
    )
    password = forms.CharField(
        label="Passphrase",
        max_length=512,
        required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}, render_value=False),
        help_text="Only for exchanges whose keys have one (OKX, KuCoin, …).",
    )


class ReconnectForm(ServiceErrorForm):
    api_key = forms.CharField(label="API key", max_length=512, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    secret = forms.CharField(
        label="API secret",
        max_length=512,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}, render_value=False),
    )
    password = forms.CharField(
        label="Passphrase",
        max_length=512,
        required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}, render_value=False),
    )


class IbAccountForm(ServiceErrorForm):
    name = forms.CharField(max_length=80)
    host = forms.CharField(max_length=253, initial="127.0.0.1", help_text="Where TWS or IB Gateway runs.")
    port = forms.IntegerField(
        min_value=1, max_value=65535, initial=4002, help_text="IB Gateway: 4001 live, 4002 paper; TWS: 7496 / 7497."
    )
    client_id = forms.IntegerField(min_value=0, max_value=999_999_999, initial=1, label="Client id")
    account_code = forms.CharField(max_length=20, help_text="e.g. U1234567 or DU1234567 (paper).")
    base_currency = forms.CharField(max_length=12, initial="USD")


class AccountEditForm(ServiceErrorForm):
    FIELD_MAP: ClassVar[dict[str, str]] = {"risk_limits": "risk_limits"}

    name = forms.CharField(max_length=80)
    risk_limits = forms.CharField(
        label="Risk limits (JSON)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        help_text='Account-wide limits, e.g. {"max_exposure_notional": 5000, "max_open_positions": 3}. Blank = none.',
    )

    def clean_risk_limits(self) -> dict[str, Any]:
        text = str(self.cleaned_data.get("risk_limits") or "").strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}).") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Write an object: {…}.")
        return value
