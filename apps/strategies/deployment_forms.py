"""The deployment form of the portal: strategy (a pre-built one with its parameters, or one of
the user's rule sets), account, instruments, timeframe, capital, and the engine settings that
apply to trading (fills, entry, costs for paper, sizing, exits) and the risk limits.

Parameter inputs are generated from the strategy's Params schema (``param_<name>``); the page's
script (static/js/backtest_form.js, shared with the backtest form) rebuilds them when the
strategy changes. Fractions are typed as percentages (a 2 % stop loss is ``2``) and converted
through Decimal. The services name the field of every error (``params.fast``,
``settings.exits.stop_loss``, ``risk.max_drawdown``); :meth:`DeploymentForm.add_service_error`
shows each message at its input, and what the user typed stays in the form.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms

from apps.accounts.models import TradingAccount
from apps.backtests.engine.settings import EngineSettings
from apps.common.errors import ApplicationError
from apps.marketdata import timeframes
from apps.marketdata.models import Instrument
from apps.strategies.models import Deployment, RuleSet

RULES_PREFIX = "rules:"
PARAM_PREFIX = "param_"
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Setting:
    """One input: its name, where its value sits (``settings``/``risk`` then the path), its kind
    (``pct`` fractions typed as percentages, ``money``, ``number``, ``int``, ``bool``, ``choice``)."""

    name: str
    path: tuple[str, ...]
    kind: str
    label: str
    help: str = ""
    optional: bool = False
    choices: tuple[tuple[str, str], ...] = ()


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "fill",
        ("settings", "fill"),
        "choice",
        "Fill at",
        "Market orders fill at the next bar's open.",
        choices=(("next_open", "Next bar's open"), ("close", "Signal bar's close (backtests only)")),
    ),
    Setting(
        "entry", ("settings", "entry"), "choice", "Entry order", choices=(("market", "Market"), ("limit", "Limit"))
    ),
    Setting(
        "limit_offset",
        ("settings", "limit_offset"),
        "pct",
        "Limit offset %",
        "Below the close for longs, above for shorts.",
    ),
    Setting("allow_short", ("settings", "allow_short"), "bool", "Allow short trades"),
    Setting("fee", ("settings", "costs", "fee"), "pct", "Paper taker fee %", "What the paper venue charges."),
    Setting("slippage_bps", ("settings", "costs", "slippage_bps"), "number", "Paper slippage (bps)"),
    Setting(
        "sizing_mode",
        ("settings", "sizing", "mode"),
        "choice",
        "Position size",
        choices=(
            ("all_equity", "All equity"),
            ("fixed_fraction", "Fixed fraction of equity"),
            ("fixed_amount", "Fixed amount"),
            ("risk_per_trade", "Risk per trade"),
            ("kelly", "Capped Kelly"),
        ),
    ),
    Setting("fraction", ("settings", "sizing", "fraction"), "pct", "Fraction of equity %"),
    Setting("amount", ("settings", "sizing", "amount"), "money", "Amount per trade"),
    Setting("risk_per_trade", ("settings", "sizing", "risk"), "pct", "Risk per trade %"),
    Setting("kelly_cap", ("settings", "sizing", "kelly_cap"), "pct", "Kelly cap %"),
    Setting("stop_loss", ("settings", "exits", "stop_loss"), "pct", "Stop loss %", "Blank = none.", True),
    Setting("take_profit", ("settings", "exits", "take_profit"), "pct", "Take profit %", "Blank = none.", True),
    Setting("trailing_stop", ("settings", "exits", "trailing_stop"), "pct", "Trailing stop %", "Blank = none.", True),
    Setting(
        "breakeven_after",
        ("settings", "exits", "breakeven_after"),
        "pct",
        "Break-even after %",
        "Move the stop to the entry once the trade gains this much.",
        True,
    ),
    Setting(
        "time_exit_bars", ("settings", "exits", "time_exit_bars"), "int", "Time exit (bars)", "Blank = none.", True
    ),
    Setting(
        "max_order_notional", ("risk", "max_order_notional"), "money", "Max order value", "Blank = no limit.", True
    ),
    Setting(
        "max_position_notional",
        ("risk", "max_position_notional"),
        "money",
        "Max position value",
        "Blank = no limit.",
        True,
    ),
    Setting(
        "max_open_positions", ("risk", "max_open_positions"), "int", "Max open positions", "Blank = no limit.", True
    ),
    Setting(
        "daily_loss_limit",
        ("risk", "daily_loss_limit"),
        "pct",
        "Daily loss limit %",
        "Pauses the deployment. Blank = none.",
        True,
    ),
    Setting(
        "max_drawdown", ("risk", "max_drawdown"), "pct", "Max drawdown %", "Halts the deployment. Blank = none.", True
    ),
)
BY_PATH = {".".join(s.path): s.name for s in SETTINGS}
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Orders", ("fill", "entry", "limit_offset", "allow_short", "fee", "slippage_bps")),
    ("Position sizing", ("sizing_mode", "fraction", "amount", "risk_per_trade", "kelly_cap")),
    ("Exits", ("stop_loss", "take_profit", "trailing_stop", "breakeven_after", "time_exit_bars")),
    (
        "Risk limits",
        ("max_order_notional", "max_position_notional", "max_open_positions", "daily_loss_limit", "max_drawdown"),
    ),
)
SHOW_WHEN = {
    "limit_offset": ("entry", "limit"),
    "fraction": ("sizing_mode", "fixed_fraction kelly"),
    "amount": ("sizing_mode", "fixed_amount"),
    "risk_per_trade": ("sizing_mode", "risk_per_trade"),
    "kelly_cap": ("sizing_mode", "kelly"),
}


def _percent(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return (Decimal(str(value)) * HUNDRED).normalize()
    except InvalidOperation:
        return None


def _dig(data: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def initial_from(*, settings: Mapping[str, Any], risk: Mapping[str, Any]) -> dict[str, Any]:
    """Form values of stored settings and risk limits (engine defaults fill what they lack)."""
    defaults = {"settings": EngineSettings().as_dict(), "risk": {}}
    given = {"settings": settings, "risk": risk}
    initial: dict[str, Any] = {}
    for spec in SETTINGS:
        value = _dig(given, spec.path)
        if value is None and not spec.optional:
            value = _dig(defaults, spec.path)
        if spec.kind == "pct":
            value = _percent(value)
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        initial[spec.name] = value
    return initial


def deployment_initial(deployment: Deployment) -> dict[str, Any]:
    initial = {
        "name": deployment.name,
        "strategy": f"{RULES_PREFIX}{deployment.rule_set_id}" if deployment.rule_set_id else deployment.strategy_key,
        "account": deployment.account_id,
        "instruments": [i.pk for i in deployment.instruments.all()],
        "timeframe": deployment.timeframe,
        "capital": deployment.capital.normalize(),
        **initial_from(settings=deployment.settings or {}, risk=deployment.risk or {}),
    }
    for name, value in (deployment.params or {}).items():
        initial[f"{PARAM_PREFIX}{name}"] = value
    return initial


def _field(spec: Setting) -> forms.Field:
    required = not spec.optional and spec.kind != "bool"
    common: dict[str, Any] = {"label": spec.label, "help_text": spec.help, "required": required}
    if spec.kind == "choice":
        return forms.ChoiceField(choices=spec.choices, **common)
    if spec.kind == "bool":
        return forms.BooleanField(**common)
    if spec.kind == "int":
        return forms.IntegerField(**common)
    if spec.kind in ("pct", "money"):
        return forms.DecimalField(widget=forms.NumberInput(attrs={"step": "any"}), **common)
    return forms.FloatField(widget=forms.NumberInput(attrs={"step": "any"}), **common)


def _param_field(name: str, prop: Mapping[str, Any]) -> forms.Field:
    label = name.replace("_", " ")
    help_text = str(prop.get("description", ""))
    kind = prop.get("type")
    if "enum" in prop:
        return forms.ChoiceField(
            choices=[(str(c), str(c)) for c in prop["enum"]], required=False, label=label, help_text=help_text
        )
    if kind == "boolean":
        return forms.BooleanField(required=False, label=label, help_text=help_text)
    if kind in ("integer", "number"):
        attrs: dict[str, Any] = {"step": prop.get("multipleOf") or (1 if kind == "integer" else "any")}
        for key, attr in (("minimum", "min"), ("maximum", "max")):
            if prop.get(key) is not None:
                attrs[attr] = prop[key]
        cls = forms.IntegerField if kind == "integer" else forms.FloatField
        return cls(required=False, label=label, help_text=help_text, widget=forms.NumberInput(attrs=attrs))
    return forms.CharField(required=False, label=label, help_text=help_text)


class DeploymentForm(forms.Form):
    name = forms.CharField(max_length=120, required=False, label="Name (optional)")
    strategy = forms.ChoiceField(label="Strategy")
    account = forms.TypedChoiceField(coerce=int, label="Trading account")
    instruments = forms.TypedMultipleChoiceField(coerce=int, label="Instruments")
    timeframe = forms.ChoiceField(choices=timeframes.CHOICES, label="Timeframe")
    capital = forms.DecimalField(
        label="Capital", min_value=Decimal("0.0000000001"), help_text="Quote currency this deployment trades with."
    )

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        catalogue: Sequence[Mapping[str, Any]],
        rule_sets: Iterable[RuleSet],
        instruments: Iterable[Instrument],
        accounts: Iterable[TradingAccount],
        initial: Mapping[str, Any] | None = None,
    ) -> None:
        base = {**initial_from(settings={}, risk={}), "capital": 10000, **(initial or {})}
        super().__init__(data, initial=base)
        self.catalogue = {str(item["key"]): item for item in catalogue}
        prebuilt = [(key, str(item.get("name") or key)) for key, item in self.catalogue.items()]
        choices: list[Any] = [("", "Choose a strategy…"), ("Pre-built", prebuilt)]
        rule_choices = [(f"{RULES_PREFIX}{rs.pk}", rs.name) for rs in rule_sets]
        if rule_choices:
            choices.append(("My rule strategies", rule_choices))
        self._choices("strategy", choices)
        self._choices("account", [("", "Choose an account…")] + [(a.pk, str(a)) for a in accounts])
        self._choices("instruments", [(i.pk, f"{i.symbol} · {i.venue}") for i in instruments])
        for spec in SETTINGS:
            self.fields[spec.name] = _field(spec)
        self.param_names: list[str] = []
        for name, prop in self.selected_schema().get("properties", {}).items():
            self.fields[f"{PARAM_PREFIX}{name}"] = _param_field(name, prop)
            if not self.is_bound and f"{PARAM_PREFIX}{name}" not in base:
                self.initial[f"{PARAM_PREFIX}{name}"] = prop.get("default")
            self.param_names.append(name)

    def _choices(self, name: str, choices: list[Any]) -> None:
        field = self.fields[name]
        assert isinstance(field, forms.ChoiceField)
        field.choices = choices

    def selected_strategy(self) -> str:
        raw = self.data.get("strategy") if self.is_bound else self.initial.get("strategy")
        return str(raw or "")

    def selected_schema(self) -> dict[str, Any]:
        item = self.catalogue.get(self.selected_strategy())
        return dict(item["params_schema"]) if item else {}

    def param_fields(self) -> list[forms.BoundField]:
        return [self[f"{PARAM_PREFIX}{name}"] for name in self.param_names]

    def setting_groups(self) -> list[tuple[str, list[tuple[forms.BoundField, str]]]]:
        groups = []
        for title, names in GROUPS:
            rows = []
            for name in names:
                when = SHOW_WHEN.get(name)
                rows.append((self[name], f"{when[0]}={when[1]}" if when else ""))
            groups.append((title, rows))
        return groups

    def _params(self) -> dict[str, Any]:
        properties = self.selected_schema().get("properties", {})
        values: dict[str, Any] = {}
        for name in self.param_names:
            value = self.cleaned_data.get(f"{PARAM_PREFIX}{name}")
            prop = properties.get(name, {})
            if prop.get("type") == "boolean":
                values[name] = bool(value)
            elif value is not None and value != "":
                if "enum" in prop:
                    value = next((c for c in prop["enum"] if str(c) == str(value)), value)
                values[name] = value
        return values

    def service_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of deployment_create / deployment_update (after is_valid())."""
        data = self.cleaned_data
        nested: dict[str, Any] = {"settings": {}, "risk": {}}
        for spec in SETTINGS:
            value = data.get(spec.name)
            if spec.kind == "pct":
                value = None if value is None else float(value / HUNDRED)
            elif spec.kind == "bool":
                value = bool(value)
            elif spec.kind == "money" and value is not None:
                value = float(value) if spec.path[0] == "settings" else str(value)
            if value is None and spec.path[0] == "risk":
                continue
            node = nested
            for key in spec.path[:-1]:
                node = node.setdefault(key, {})
            node[spec.path[-1]] = value
        selected = str(data["strategy"])
        rule_set_id = int(selected[len(RULES_PREFIX) :]) if selected.startswith(RULES_PREFIX) else None
        return {
            "name": data.get("name") or "",
            "strategy_key": "" if rule_set_id else selected,
            "params": {} if rule_set_id else self._params(),
            "rule_set_id": rule_set_id,
            "account_id": data["account"],
            "instrument_ids": list(data["instruments"]),
            "timeframe": data["timeframe"],
            "capital": data["capital"],
            "settings": nested["settings"],
            "risk": nested["risk"],
        }

    DIRECT = {
        "strategy": "strategy",
        "strategy_key": "strategy",
        "rule_set_id": "strategy",
        "rules": "strategy",
        "params": "strategy",
        "account_id": "account",
        "instrument_ids": "instruments",
        "timeframe": "timeframe",
        "capital": "capital",
        "name": "name",
        "mode": "account",
    }

    def field_for_path(self, path: str) -> str | None:
        if path in self.DIRECT:
            return self.DIRECT[path]
        if path in BY_PATH:
            return BY_PATH[path]
        head, _, rest = path.partition(".")
        if head == "params":
            name = f"{PARAM_PREFIX}{rest.split('.', 1)[0]}"
            return name if name in self.fields else "strategy"
        if head == "rules":
            return "strategy"
        return None

    def add_service_error(self, exc: ApplicationError) -> None:
        fields = exc.extra.get("fields")
        if not isinstance(fields, Mapping) or not fields:
            self.add_error(None, exc.message)
            return
        for path, messages in fields.items():
            target = self.field_for_path(str(path))
            for message in [messages] if isinstance(messages, str) else list(messages):
                text = str(message)
                if target is None:
                    text = f"{path}: {text}"
                self.add_error(target, text)
