"""Portal forms of the backtests app.

:class:`RunSpecForm` is what backtests, optimisations and walk-forwards share: the strategy (a
pre-built one with its parameters, or one of the user's rule sets), the instrument, timeframe and
range, and the engine settings. Parameter inputs are generated from the strategy's Params schema
(``param_<name>``); the page's script rebuilds them from the same catalogue JSON when the
strategy changes. Fractions are shown as percentages (a 0.1 % fee is typed ``0.1``) and
converted through Decimal, so what the user typed comes back unchanged.

The services name the field of every error (``params.fast``, ``settings.costs.fee``,
``space.slow.step``); :meth:`RunSpecForm.add_service_error` puts each message at the input that
shows that field, or at the top of the form when no input does.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms

from apps.backtests.engine import EngineSettings
from apps.backtests.models import MonteCarlo, Optimisation, WalkForward
from apps.common.errors import ApplicationError
from apps.marketdata import timeframes
from apps.marketdata.models import Instrument
from apps.strategies.models import RuleSet

RULES_PREFIX = "rules:"
RULES_KEY = "rules"
PARAM_PREFIX = "param_"
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class SettingField:
    """One engine setting on the form: the input's name, where it sits in the settings dict,
    and how it is typed (``pct`` fractions shown as percentages; ``optional`` blank = null)."""

    name: str
    path: tuple[str, ...]
    kind: str  # "money" | "number" | "pct" | "int" | "bool" | "choice"
    label: str
    help: str = ""
    optional: bool = False
    choices: tuple[tuple[str, str], ...] = ()


FILL_CHOICES = (("next_open", "Next bar's open"), ("close", "Signal bar's close"))
ENTRY_CHOICES = (("market", "Market"), ("limit", "Limit"))
SLIPPAGE_CHOICES = (
    ("none", "None"),
    ("fixed_bps", "Fixed (basis points)"),
    ("volume_share", "Volume share"),
    ("sqrt_impact", "Square-root impact"),
)
SIZING_CHOICES = (
    ("all_equity", "All equity"),
    ("fixed_fraction", "Fixed fraction of equity"),
    ("fixed_amount", "Fixed amount"),
    ("risk_per_trade", "Risk per trade (ATR stop)"),
    ("kelly", "Capped Kelly"),
)

SETTING_FIELDS: tuple[SettingField, ...] = (
    SettingField("cash", ("cash",), "money", "Starting cash"),
    SettingField("fill", ("fill",), "choice", "Fill at", choices=FILL_CHOICES),
    SettingField("entry", ("entry",), "choice", "Entry order", choices=ENTRY_CHOICES),
    SettingField(
        "limit_offset", ("limit_offset",), "pct", "Limit offset %", "Below the price for longs, above for shorts."
    ),
    SettingField("allow_short", ("allow_short",), "bool", "Allow short trades"),
    SettingField("fee", ("costs", "fee"), "pct", "Taker fee %"),
    SettingField(
        "maker_fee", ("costs", "maker_fee"), "pct", "Maker fee %", "Limit fills; blank = the taker fee.", True
    ),
    SettingField("fee_fixed", ("costs", "fee_fixed"), "money", "Fixed fee per fill"),
    SettingField("slippage", ("costs", "slippage"), "choice", "Slippage model", choices=SLIPPAGE_CHOICES),
    SettingField("slippage_bps", ("costs", "slippage_bps"), "number", "Slippage (bps)"),
    SettingField("impact", ("costs", "impact"), "number", "Impact coefficient"),
    SettingField("sizing_mode", ("sizing", "mode"), "choice", "Position size", choices=SIZING_CHOICES),
    SettingField("fraction", ("sizing", "fraction"), "pct", "Fraction of equity %"),
    SettingField("amount", ("sizing", "amount"), "money", "Amount per trade"),
    SettingField("risk", ("sizing", "risk"), "pct", "Risk per trade %"),
    SettingField("atr_period", ("sizing", "atr_period"), "int", "ATR period"),
    SettingField("atr_multiple", ("sizing", "atr_multiple"), "number", "Stop distance (ATR multiples)"),
    SettingField("kelly_cap", ("sizing", "kelly_cap"), "pct", "Kelly cap %"),
    SettingField("stop_loss", ("exits", "stop_loss"), "pct", "Stop loss %", "Blank = none.", True),
    SettingField("take_profit", ("exits", "take_profit"), "pct", "Take profit %", "Blank = none.", True),
    SettingField("trailing_stop", ("exits", "trailing_stop"), "pct", "Trailing stop %", "Blank = none.", True),
    SettingField(
        "breakeven_after",
        ("exits", "breakeven_after"),
        "pct",
        "Break-even after %",
        "Move the stop to the entry once the trade gains this much.",
        True,
    ),
    SettingField("time_exit_bars", ("exits", "time_exit_bars"), "int", "Time exit (bars)", "Blank = none.", True),
)
SETTINGS_BY_PATH = {".".join(("settings", *f.path)): f.name for f in SETTING_FIELDS}
PERCENT_FIELDS = {f.name for f in SETTING_FIELDS if f.kind == "pct"}
PERCENT_HINT = " (the engine counts in fractions: 0.01 is the 1 typed here)"

# Which inputs only matter for some values of another (the page hides the others).
SHOW_WHEN = {
    "limit_offset": ("entry", "limit"),
    "maker_fee": ("entry", "limit"),
    "slippage_bps": ("slippage", "fixed_bps"),
    "impact": ("slippage", "volume_share sqrt_impact"),
    "fraction": ("sizing_mode", "fixed_fraction"),
    "amount": ("sizing_mode", "fixed_amount"),
    "risk": ("sizing_mode", "risk_per_trade"),
    "atr_period": ("sizing_mode", "risk_per_trade"),
    "atr_multiple": ("sizing_mode", "risk_per_trade"),
    "kelly_cap": ("sizing_mode", "kelly"),
}
SETTING_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Orders and fills", ("cash", "fill", "entry", "limit_offset", "allow_short")),
    ("Costs", ("fee", "maker_fee", "fee_fixed", "slippage", "slippage_bps", "impact")),
    ("Position sizing", ("sizing_mode", "fraction", "amount", "risk", "atr_period", "atr_multiple", "kelly_cap")),
    ("Exits", ("stop_loss", "take_profit", "trailing_stop", "breakeven_after", "time_exit_bars")),
)


def percent(value: Any) -> Decimal | None:
    """A fraction as the percentage the form shows (0.001 -> 0.1), exactly."""
    if value is None:
        return None
    try:
        return (Decimal(str(value)) * HUNDRED).normalize()
    except InvalidOperation:
        return None


def fraction(value: Decimal | None) -> float | None:
    return None if value is None else float(value / HUNDRED)


def default_settings() -> dict[str, Any]:
    """The engine's default settings, as nested dicts."""
    return EngineSettings.from_dict({}).as_dict()


def _dig(data: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def settings_initial(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Form initial values of an engine settings dict (defaults fill what it lacks)."""
    merged = default_settings()
    initial: dict[str, Any] = {}
    for field in SETTING_FIELDS:
        value = _dig(settings, field.path)
        if value is None and not field.optional:
            value = _dig(merged, field.path)
        if field.kind == "pct":
            value = percent(value)
        elif isinstance(value, float) and value.is_integer():
            value = int(value)  # 10000, not 10000.0
        initial[field.name] = value
    return initial


def _setting_form_field(spec: SettingField) -> forms.Field:
    required = not spec.optional and spec.kind not in ("bool",)
    common: dict[str, Any] = {"label": spec.label, "help_text": spec.help, "required": required}
    if spec.kind == "choice":
        return forms.ChoiceField(choices=spec.choices, **common)
    if spec.kind == "bool":
        return forms.BooleanField(**common)
    if spec.kind == "int":
        return forms.IntegerField(**common)
    if spec.kind == "pct":
        return forms.DecimalField(widget=forms.NumberInput(attrs={"step": "any"}), **common)
    return forms.FloatField(widget=forms.NumberInput(attrs={"step": "any"}), **common)


def _param_form_field(name: str, prop: Mapping[str, Any]) -> forms.Field:
    """An input for one Params schema property; the bounds become the browser's min/max/step
    (the service checks them again and names the field when they are broken)."""
    label = name.replace("_", " ")
    help_text = str(prop.get("description", ""))
    kind = prop.get("type")
    if "enum" in prop:
        choices = [(str(c), str(c)) for c in prop["enum"]]
        return forms.ChoiceField(choices=choices, required=False, label=label, help_text=help_text)
    if kind == "boolean":
        return forms.BooleanField(required=False, label=label, help_text=help_text)
    if kind in ("integer", "number"):
        attrs: dict[str, Any] = {"step": prop.get("multipleOf") or (1 if kind == "integer" else "any")}
        if prop.get("minimum") is not None:
            attrs["min"] = prop["minimum"]
        if prop.get("maximum") is not None:
            attrs["max"] = prop["maximum"]
        field_cls = forms.IntegerField if kind == "integer" else forms.FloatField
        return field_cls(required=False, label=label, help_text=help_text, widget=forms.NumberInput(attrs=attrs))
    return forms.CharField(required=False, label=label, help_text=help_text)


def _typed_choice(prop: Mapping[str, Any], raw: Any) -> Any:
    """A choice posted as text, back to the schema's own value (5 for "5", True for "True")."""
    for choice in prop.get("enum", []):
        if str(choice) == str(raw):
            return choice
    return raw


def strategy_value(*, strategy_key: str, rule_set_id: int | None) -> str:
    """The strategy select's value for a run: the key, or ``rules:<id>`` for a rule set."""
    return f"{RULES_PREFIX}{rule_set_id}" if rule_set_id else strategy_key


class RunSpecForm(forms.Form):
    """Strategy, market and engine settings of a run (see the module docstring)."""

    name = forms.CharField(max_length=120, required=False, label="Name (optional)")
    strategy = forms.ChoiceField(label="Strategy")
    instrument = forms.TypedChoiceField(coerce=int, label="Instrument")
    timeframe = forms.ChoiceField(choices=timeframes.CHOICES, label="Timeframe")
    start_at = forms.DateTimeField(
        required=False,
        label="From (UTC)",
        help_text="Blank = the first stored bar.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    end_at = forms.DateTimeField(
        required=False,
        label="To (UTC)",
        help_text="Blank = the last stored bar.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        catalogue: Sequence[Mapping[str, Any]],
        rule_sets: Iterable[RuleSet],
        instruments: Iterable[Instrument],
        initial: Mapping[str, Any] | None = None,
    ) -> None:
        base = {**settings_initial({}), **(initial or {})}
        super().__init__(data, initial=base)
        self.catalogue = {str(item["key"]): item for item in catalogue}
        rule_choices = [(f"{RULES_PREFIX}{rs.pk}", rs.name) for rs in rule_sets]
        prebuilt = [(key, str(item.get("name") or key)) for key, item in self.catalogue.items()]
        choices: list[Any] = [("", "Choose a strategy…"), ("Pre-built", prebuilt)]
        if rule_choices:
            choices.append(("My rule strategies", rule_choices))
        strategy_field = self.fields["strategy"]
        assert isinstance(strategy_field, forms.ChoiceField)
        strategy_field.choices = choices
        instrument_field = self.fields["instrument"]
        assert isinstance(instrument_field, forms.ChoiceField)
        instrument_field.choices = [("", "Choose an instrument…")] + [
            (i.pk, f"{i.symbol} · {i.venue}") for i in instruments
        ]
        for spec in SETTING_FIELDS:
            self.fields[spec.name] = _setting_form_field(spec)
        self.param_names: list[str] = []
        for name, prop in self.selected_schema().get("properties", {}).items():
            self.fields[f"{PARAM_PREFIX}{name}"] = _param_form_field(name, prop)
            if not self.is_bound and f"{PARAM_PREFIX}{name}" not in base:
                self.initial[f"{PARAM_PREFIX}{name}"] = prop.get("default")
            self.param_names.append(name)

    # --- the selected strategy ----------------------------------------------------------------

    def selected_strategy(self) -> str:
        raw = self.data.get("strategy") if self.is_bound else self.initial.get("strategy")
        return str(raw or "")

    def selected_schema(self) -> dict[str, Any]:
        item = self.catalogue.get(self.selected_strategy())
        return dict(item["params_schema"]) if item else {}

    def param_fields(self) -> list[forms.BoundField]:
        return [self[f"{PARAM_PREFIX}{name}"] for name in self.param_names]

    def setting_groups(self) -> list[tuple[str, list[tuple[forms.BoundField, str]]]]:
        """(title, [(bound field, show-when attribute)]) for the template."""
        groups = []
        for title, names in SETTING_GROUPS:
            rows = []
            for name in names:
                when = SHOW_WHEN.get(name)
                rows.append((self[name], f"{when[0]}={when[1]}" if when else ""))
            groups.append((title, rows))
        return groups

    # --- what the services take ---------------------------------------------------------------

    def params(self) -> dict[str, Any]:
        """The typed parameters (blank inputs left out: the strategy's defaults apply)."""
        properties = self.selected_schema().get("properties", {})
        values: dict[str, Any] = {}
        for name in self.param_names:
            value = self.cleaned_data.get(f"{PARAM_PREFIX}{name}")
            prop = properties.get(name, {})
            if prop.get("type") == "boolean":
                values[name] = bool(value)
            elif value is not None and value != "":
                values[name] = _typed_choice(prop, value) if "enum" in prop else value
        return values

    def settings(self) -> dict[str, Any]:
        """The engine settings dict (EngineSettings.from_dict's shape)."""
        result: dict[str, Any] = {}
        for spec in SETTING_FIELDS:
            value = self.cleaned_data.get(spec.name)
            if spec.kind == "pct":
                value = fraction(value)
            elif spec.kind == "bool":
                value = bool(value)
            node = result
            for key in spec.path[:-1]:
                node = node.setdefault(key, {})
            node[spec.path[-1]] = value
        return result

    def run_spec(self) -> dict[str, Any]:
        """Keyword arguments shared by backtest_create, optimisation_create and
        walk_forward_create (call after is_valid())."""
        data = self.cleaned_data
        selected = str(data["strategy"])
        rule_set_id = int(selected[len(RULES_PREFIX) :]) if selected.startswith(RULES_PREFIX) else None
        start_at: datetime | None = data.get("start_at")
        end_at: datetime | None = data.get("end_at")
        return {
            "strategy_key": RULES_KEY if rule_set_id else selected,
            "params": {} if rule_set_id else self.params(),
            "rule_set_id": rule_set_id,
            "instrument_id": data["instrument"],
            "timeframe": data["timeframe"],
            "start_at": start_at,
            "end_at": end_at,
            "settings": self.settings(),
            "name": data.get("name") or "",
        }

    # --- errors from the services -------------------------------------------------------------

    DIRECT_PATHS: dict[str, str] = {
        "strategy": "strategy",
        "strategy_key": "strategy",
        "rule_set": "strategy",
        "rule_set_id": "strategy",
        "rules": "strategy",
        "params": "strategy",
        "instrument": "instrument",
        "instrument_id": "instrument",
        "timeframe": "timeframe",
        "start_at": "start_at",
        "start": "start_at",
        "end_at": "end_at",
        "end": "end_at",
        "range": "start_at",
        "name": "name",
        "settings.timeframe": "timeframe",
    }

    def field_for_path(self, path: str) -> str | None:
        """The input showing an error about ``path``; None for the form as a whole."""
        if path in self.DIRECT_PATHS:
            return self.DIRECT_PATHS[path]
        if path in SETTINGS_BY_PATH:
            return SETTINGS_BY_PATH[path]
        head, _, rest = path.partition(".")
        if head == "params":
            name = f"{PARAM_PREFIX}{rest.split('.', 1)[0]}"
            return name if name in self.fields else "strategy"
        if head == "rules":
            return "strategy"
        if head == "settings":
            # settings.costs.fee.something -> the closest input that exists.
            parts = path.split(".")
            while len(parts) > 1:
                parts.pop()
                if ".".join(parts) in SETTINGS_BY_PATH:
                    return SETTINGS_BY_PATH[".".join(parts)]
            return None
        return path if path in self.fields else None

    def add_service_error(self, exc: ApplicationError) -> None:
        fields = exc.extra.get("fields")
        if not isinstance(fields, Mapping) or not fields:
            self.add_error(None, exc.message)
            return
        for path, messages in fields.items():
            target = self.field_for_path(str(path))
            for message in [messages] if isinstance(messages, str) else list(messages):
                text = str(message)
                if target is None and str(path) not in text:
                    text = f"{path}: {text}"
                elif target in PERCENT_FIELDS and any(c.isdigit() for c in text):
                    text += PERCENT_HINT
                self.add_error(target, text)


def run_initial(run: Any) -> dict[str, Any]:
    """Form initial values that repeat a run (a Backtest, Optimisation or WalkForward)."""
    initial: dict[str, Any] = {
        "name": run.name,
        "strategy": strategy_value(strategy_key=run.strategy_key, rule_set_id=run.rule_set_id),
        "instrument": run.instrument_id,
        "timeframe": run.timeframe,
        "start_at": run.start_at,
        "end_at": run.end_at,
        **settings_initial(run.settings or {}),
    }
    for name, value in (run.params or {}).items():
        initial[f"{PARAM_PREFIX}{name}"] = value
    return initial


class BacktestForm(RunSpecForm):
    pass


def _default_step(prop: Mapping[str, Any]) -> float | int | None:
    """A grid step of about ten values over the bounds (the Params' own step when it has one)."""
    if prop.get("multipleOf"):
        step = prop["multipleOf"]
        return int(step) if prop.get("type") == "integer" and float(step).is_integer() else step
    low, high = prop.get("minimum"), prop.get("maximum")
    if low is None or high is None:
        return None
    if prop.get("type") == "integer":
        return max(1, round((high - low) / 10))
    return float(Decimal(str((high - low) / 10)).quantize(Decimal("1e-6")).normalize())


def space_defaults(schema: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per parameter: whether it is searched by default, and low/high/step from its bounds.
    Numbers with both bounds are searched; booleans and choices are offered but off."""
    result: dict[str, dict[str, Any]] = {}
    for name, prop in (schema.get("properties") or {}).items():
        numeric = prop.get("type") in ("integer", "number") and "enum" not in prop
        bounded = numeric and prop.get("minimum") is not None and prop.get("maximum") is not None
        if bounded:
            result[name] = {
                "kind": "range",
                "search": True,
                "low": prop["minimum"],
                "high": prop["maximum"],
                "step": _default_step(prop),
            }
        elif prop.get("type") == "boolean" or "enum" in prop:
            result[name] = {"kind": "choices", "search": False, "choices": prop.get("enum", [False, True])}
    return result


class OptimisationForm(RunSpecForm):
    """A run spec plus the search: method, objective, the space (per parameter: search it or
    keep its value, with low/high/step), minimum trades and the number of trials."""

    method = forms.ChoiceField(choices=Optimisation.Method.choices, initial=Optimisation.Method.GRID)
    objective = forms.ChoiceField(choices=Optimisation.Objective.choices, initial=Optimisation.Objective.SHARPE)
    min_trades = forms.IntegerField(
        initial=5, label="Minimum trades", help_text="Fewer trades: the trial is infeasible."
    )
    n_trials = forms.IntegerField(
        initial=100, label="Trials", help_text="TPE: the number of trials. Grid: the most combinations tried."
    )

    def __init__(self, data: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        self.space_names: list[str] = []
        for name, spec in space_defaults(self.selected_schema()).items():
            self.fields[f"search_{name}"] = forms.BooleanField(required=False, label=f"Search {name}")
            if not self.is_bound:
                self.initial.setdefault(f"search_{name}", spec["search"])
            if spec["kind"] == "range":
                for part in ("low", "high", "step"):
                    self.fields[f"{part}_{name}"] = forms.FloatField(
                        required=False, label=f"{name} {part}", widget=forms.NumberInput(attrs={"step": "any"})
                    )
                    if not self.is_bound:
                        self.initial.setdefault(f"{part}_{name}", spec[part])
            self.space_names.append(name)
        self.space_kinds = {name: spec["kind"] for name, spec in space_defaults(self.selected_schema()).items()}

    def space_rows(self) -> list[dict[str, Any]]:
        """One row per parameter: its search inputs (when it can be searched) and its value
        (used when it is not searched)."""
        rows = []
        for name in self.param_names:
            kind = self.space_kinds.get(name, "fixed")
            row: dict[str, Any] = {"name": name, "kind": kind, "param": self[f"{PARAM_PREFIX}{name}"]}
            if kind != "fixed":
                row["search"] = self[f"search_{name}"]
            if kind == "range":
                row.update(low=self[f"low_{name}"], high=self[f"high_{name}"], step=self[f"step_{name}"])
            rows.append(row)
        return rows

    def space(self) -> dict[str, Any]:
        schema = self.selected_schema().get("properties", {})
        space: dict[str, Any] = {}
        for name in self.space_names:
            if not self.cleaned_data.get(f"search_{name}"):
                continue
            if self.space_kinds[name] == "choices":
                space[name] = {"choices": list(schema.get(name, {}).get("enum", [False, True]))}
                continue
            spec: dict[str, Any] = {}
            for part in ("low", "high", "step"):
                value = self.cleaned_data.get(f"{part}_{name}")
                if value is not None:
                    integer = schema.get(name, {}).get("type") == "integer" and float(value).is_integer()
                    spec[part] = int(value) if integer else value
            space[name] = spec
        return space

    def research_spec(self) -> dict[str, Any]:
        """Keyword arguments of optimisation_create beyond the run spec."""
        data = self.cleaned_data
        return {
            "method": data["method"],
            "objective": data["objective"],
            "space": self.space(),
            "min_trades": data["min_trades"],
            "n_trials": data["n_trials"],
        }

    def field_for_path(self, path: str) -> str | None:
        head, _, rest = path.partition(".")
        if head == "space" and rest:
            name, _, part = rest.partition(".")
            if part in ("low", "high", "step") and f"{part}_{name}" in self.fields:
                return f"{part}_{name}"
            if f"search_{name}" in self.fields:
                return f"low_{name}" if f"low_{name}" in self.fields else f"search_{name}"
        if head == "space":
            return "strategy"
        return super().field_for_path(path)


class WalkForwardForm(OptimisationForm):
    mode = forms.ChoiceField(choices=WalkForward.Mode.choices, initial=WalkForward.Mode.ROLLING)
    windows_count = forms.IntegerField(initial=5, label="Windows")
    train_ratio = forms.DecimalField(
        initial=Decimal(70), label="Train share %", help_text="Of each window, the part the parameters are chosen on."
    )

    def research_spec(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            **super().research_spec(),
            "mode": data["mode"],
            "windows_count": data["windows_count"],
            "train_ratio": fraction(data["train_ratio"]),
        }


class MonteCarloForm(forms.Form):
    method = forms.ChoiceField(choices=MonteCarlo.Method.choices, initial=MonteCarlo.Method.RESAMPLE)
    simulations = forms.IntegerField(initial=5000)
    noise = forms.DecimalField(
        initial=Decimal(0), label="Return noise %", help_text="Std-dev of noise added to each trade's return."
    )
    seed = forms.IntegerField(required=False, help_text="Blank = a new random draw each run.")
    loss_threshold = forms.DecimalField(
        initial=Decimal(20), label="Loss threshold %", help_text="Report the probability of losing at least this much."
    )

    PATHS = {"method", "simulations", "noise", "seed", "loss_threshold"}

    def research_spec(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "method": data["method"],
            "simulations": data["simulations"],
            "noise": fraction(data["noise"]),
            "seed": data.get("seed"),
            "loss_threshold": fraction(data["loss_threshold"]),
        }

    def add_service_error(self, exc: ApplicationError) -> None:
        fields = exc.extra.get("fields")
        if not isinstance(fields, Mapping) or not fields:
            self.add_error(None, exc.message)
            return
        for path, messages in fields.items():
            target = str(path) if str(path) in self.PATHS else None
            for message in [messages] if isinstance(messages, str) else list(messages):
                self.add_error(target, str(message))
