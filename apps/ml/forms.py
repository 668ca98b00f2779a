"""Forms of the ML strategy pages: the ML strategy form (market, features, label, model,
decision rule, validation, promotion, drift and the retraining schedule), the schedule edited on
its own from the model page, "Deploy on paper" and "Backtest".

They only parse: the services validate and decide. The services name a nested input with a dotted
path (``label.horizon``, ``model_params.max_iter``, ``schedule.cron``); :meth:`MLErrorsMixin.
add_service_error` shows each message at the input it names, and a bound form keeps what the
user typed. Fractions (thresholds, returns, margins) are typed as fractions, as the API takes
them: 0.002 is 0.2 %.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from django import forms

from apps.accounts.models import TradingAccount
from apps.common.errors import ApplicationError
from apps.marketdata import timeframes
from apps.marketdata.models import Instrument
from apps.ml.models import MLStrategy

WEEKDAYS = (
    (0, "Monday"),
    (1, "Tuesday"),
    (2, "Wednesday"),
    (3, "Thursday"),
    (4, "Friday"),
    (5, "Saturday"),
    (6, "Sunday"),
)
SCHEDULE_CHOICES = (
    ("off", "Off"),
    ("hourly", "Hourly"),
    ("daily", "Daily"),
    ("weekly", "Weekly"),
    ("cron", "Cron expression"),
)
LABEL_CHOICES = (
    ("forward", "Forward return: the return over the next N bars is above a threshold"),
    ("triple_barrier", "Triple barrier: the target is hit before the stop within N bars"),
)
MODEL_PARAM_PREFIX = "mp_"


@dataclass(frozen=True)
class ModelParam:
    """One parameter of a model family, as an input ``mp_<kind>_<name>``. Left blank it is not
    sent, and the pipeline's default (shown as the placeholder) applies."""

    kind: str
    name: str
    help: str
    number: str  # "int" | "float"
    default: Any
    low: Any
    high: Any

    @property
    def field_name(self) -> str:
        return f"{MODEL_PARAM_PREFIX}{self.kind}_{self.name}"


def model_params() -> list[ModelParam]:
    """Every model family's parameters, from the pipeline's schema (defaults and bounds)."""
    from apps.ml.pipeline.estimators import MODEL_KINDS, model_params_schema

    return [
        ModelParam(kind, name, str(spec.get("help") or name), str(spec["type"]), spec["default"], spec["low"],
                   spec["high"])
        for kind in MODEL_KINDS
        for name, spec in model_params_schema(kind).items()
    ]  # fmt: skip


def _number_field(spec: ModelParam) -> forms.Field:
    attrs = {"placeholder": f"{spec.default:g}", "data-model-kind": spec.kind}
    label = f"{spec.help} ({spec.name})"
    hint = f"{spec.low:g} to {spec.high:g}"
    if spec.number == "int":
        return forms.IntegerField(required=False, label=label, help_text=hint, widget=forms.NumberInput(attrs=attrs))
    return forms.FloatField(
        required=False, label=label, help_text=hint, widget=forms.NumberInput(attrs={**attrs, "step": "any"})
    )


def _float(label: str, help_text: str = "", **kwargs: Any) -> forms.FloatField:
    return forms.FloatField(label=label, help_text=help_text, widget=forms.NumberInput(attrs={"step": "any"}), **kwargs)


class MLErrorsMixin(forms.Form):
    """Shows a service's refusal at the input its dotted path names (or above the form)."""

    ALIASES: Mapping[str, str] = {}
    # Paths whose message reads well above the form without naming the path.
    PLAIN = frozenset({"model", "strategy", "params.model", "__all__"})

    def field_for_path(self, path: str) -> str | None:
        if path in self.fields:
            return path
        if path in self.ALIASES and self.ALIASES[path] in self.fields:
            return self.ALIASES[path]
        flat = path.replace(".", "_")
        if flat in self.fields:
            return flat
        head = path.split(".", 1)[0]
        return self.ALIASES.get(head) if self.ALIASES.get(head) in self.fields else None

    def add_service_error(self, exc: ApplicationError) -> None:
        fields = exc.extra.get("fields")
        if not isinstance(fields, Mapping) or not fields:
            self.add_error(None, exc.message)
            return
        for path, messages in fields.items():
            target = self.field_for_path(str(path))
            for message in [messages] if isinstance(messages, str) else list(messages):
                plain = target or path in self.PLAIN
                self.add_error(target, str(message) if plain else f"{path}: {message}")


class ScheduleFieldsMixin(forms.Form):
    """The retraining schedule: off, hourly (at the minute of ``schedule_time``), daily or weekly
    at HH:MM UTC, or a cron expression (minute hour day-of-month month day-of-week, UTC)."""

    schedule_every = forms.ChoiceField(
        choices=SCHEDULE_CHOICES, initial="off", label="Retrain", widget=forms.RadioSelect
    )
    schedule_time = forms.TimeField(
        required=False,
        label="At (UTC)",
        initial="03:00",
        input_formats=["%H:%M", "%H:%M:%S"],
        widget=forms.TimeInput(format="%H:%M", attrs={"type": "time"}),
        help_text="Hourly runs use its minute.",
    )
    schedule_weekday = forms.TypedChoiceField(coerce=int, choices=WEEKDAYS, initial=0, label="On", required=False)
    schedule_cron = forms.CharField(
        required=False,
        max_length=120,
        label="Cron expression (UTC)",
        help_text="minute hour day-of-month month day-of-week, e.g. 30 2 * * 1-5",
        widget=forms.TextInput(attrs={"placeholder": "30 2 * * 1-5", "spellcheck": "false"}),
    )

    SCHEDULE_ALIASES = {
        "schedule": "schedule_every",
        "schedule.every": "schedule_every",
        "schedule.hour": "schedule_time",
        "schedule.minute": "schedule_time",
        "schedule.weekday": "schedule_weekday",
        "schedule.cron": "schedule_cron",
    }

    def schedule_data(self) -> dict[str, Any]:
        data = self.cleaned_data
        when: time | None = data.get("schedule_time")
        schedule: dict[str, Any] = {"every": data.get("schedule_every") or "off"}
        if when is not None:
            schedule.update(hour=when.hour, minute=when.minute)
        if data.get("schedule_weekday") not in (None, ""):
            schedule["weekday"] = data["schedule_weekday"]
        if schedule["every"] == "cron":
            schedule["cron"] = (data.get("schedule_cron") or "").strip()
        return schedule


def schedule_initial(described: Mapping[str, Any] | None) -> dict[str, Any]:
    """Form values from ``ml_schedule_describe``'s answer."""
    if not described:
        return {"schedule_every": "off"}
    hour, minute = described.get("hour"), described.get("minute")
    initial: dict[str, Any] = {"schedule_every": described.get("every") or "off"}
    if hour is not None or minute is not None:
        initial["schedule_time"] = time(int(hour or 0), int(minute or 0))
    if described.get("weekday") is not None:
        initial["schedule_weekday"] = described["weekday"]
    if described.get("cron"):
        initial["schedule_cron"] = described["cron"]
    return initial


class ScheduleForm(ScheduleFieldsMixin, MLErrorsMixin):
    """The schedule alone (edited inline on the model page)."""

    ALIASES = ScheduleFieldsMixin.SCHEDULE_ALIASES


class MLStrategyForm(ScheduleFieldsMixin, MLErrorsMixin):
    name = forms.CharField(max_length=120)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    instrument_ids = forms.TypedMultipleChoiceField(
        coerce=int,
        label="Instruments",
        help_text="Several instruments pool their samples into one model (same timeframe).",
        widget=forms.SelectMultiple(attrs={"size": 6}),
    )
    timeframe = forms.ChoiceField(choices=timeframes.CHOICES, initial="1h")
    higher_timeframe = forms.ChoiceField(
        required=False,
        choices=[("", "None"), *timeframes.CHOICES],
        label="Higher timeframe",
        help_text="For the “Higher timeframe” features: a whole multiple (2 to 24 times) of the timeframe.",
    )
    features = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, required=False)

    label_kind = forms.ChoiceField(choices=LABEL_CHOICES, initial="forward", label="Label", widget=forms.RadioSelect)
    label_horizon = forms.IntegerField(label="Horizon N (bars)", initial=12)
    label_threshold = _float("Threshold (return)", "Forward return above it is 1, e.g. 0.002 = 0.2 %.", initial=0.0)
    label_stop = _float("Stop (return)", "Lower barrier below the entry close, e.g. 0.01 = 1 %.", initial=0.01)
    label_target = _float("Target (return)", "Upper barrier above the entry close, e.g. 0.02 = 2 %.", initial=0.02)

    model_kind = forms.ChoiceField(choices=MLStrategy.ModelKind.choices, initial="hist_gb", label="Model")

    decision_threshold = _float("Enter long when P ≥", "The predicted probability that the label is 1.", initial=0.55)
    decision_exit_threshold = _float("Exit long when P <", initial=0.5)
    decision_allow_short = forms.BooleanField(
        required=False, label="Allow shorts (enter when P ≤ 1 - enter, exit when P > 1 - exit)"
    )

    validation_n_splits = forms.IntegerField(label="Walk-forward splits", initial=5)
    validation_embargo = forms.IntegerField(
        label="Embargo (bars)", initial=12, help_text="Gap between each training set and its test block."
    )
    validation_history_bars = forms.IntegerField(
        label="History (bars)", initial=20_000, help_text="The newest bars trained on, per instrument."
    )
    seed = forms.IntegerField(initial=42, min_value=0, help_text="Same data, settings and seed: the same model.")

    promotion_metric = forms.ChoiceField(choices=MLStrategy.Metric.choices, initial="auc", label="Promote on")
    promotion_margin = _float(
        "By a margin of", "A new version replaces the promoted one only if it is better by this much.", initial=0.005
    )
    drift_threshold = _float(
        "Drift when PSI ≥", "0.1 small, 0.25 large shift in a feature's distribution.", initial=0.25
    )
    drift_window = forms.IntegerField(label="Drift window (bars)", initial=500, help_text="Newest bars compared.")
    retrain_on_drift = forms.BooleanField(required=False, initial=True, label="Retrain when drift is detected")

    ALIASES = {
        "instruments": "instrument_ids",
        "instrument": "instrument_ids",
        "label": "label_kind",
        "history": "validation_history_bars",
        "validation": "validation_n_splits",
        "decision": "decision_threshold",
        "model_params": "model_kind",
        **ScheduleFieldsMixin.SCHEDULE_ALIASES,
    }
    LOCKED = ("instrument_ids", "timeframe", "higher_timeframe")

    def __init__(
        self,
        *args: Any,
        instruments: Iterable[Instrument] = (),
        catalogue: Sequence[Mapping[str, Any]] = (),
        locked: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.catalogue = list(catalogue)
        self.locked = locked
        instrument_field = self.fields["instrument_ids"]
        assert isinstance(instrument_field, forms.TypedMultipleChoiceField)
        instrument_field.choices = [(i.pk, _instrument_label(i)) for i in instruments]
        feature_field = self.fields["features"]
        assert isinstance(feature_field, forms.MultipleChoiceField)
        feature_field.choices = [(f["name"], f.get("label") or f["name"]) for f in self.catalogue]
        self.model_params = model_params()
        for spec in self.model_params:
            self.fields[spec.field_name] = _number_field(spec)
        if locked:
            # Trained versions depend on them: the service refuses a change, so they are shown, not sent.
            for name in self.LOCKED:
                self.fields[name].disabled = True
                self.fields[name].help_text = "Fixed once a version is trained: create a new ML strategy to change it."

    def field_for_path(self, path: str) -> str | None:
        head, _, rest = path.partition(".")
        if head == "model_params" and rest:
            kind = self.data.get("model_kind") if self.is_bound else self.initial.get("model_kind")
            name = f"{MODEL_PARAM_PREFIX}{kind}_{rest.split('.', 1)[0]}"
            return name if name in self.fields else "model_kind"
        if head in ("higher_timeframe", "htf"):
            return "higher_timeframe"
        return super().field_for_path(path)

    # -- rendering helpers -------------------------------------------------------------------
    def feature_groups(self) -> list[dict[str, Any]]:
        """The catalogue by group, each feature with its description and whether it is ticked."""
        value = self["features"].value() or []
        chosen = {str(v) for v in value}
        groups: dict[str, list[dict[str, Any]]] = {}
        for item in self.catalogue:
            groups.setdefault(str(item.get("group") or "Other"), []).append(
                {
                    "name": item["name"],
                    "label": item.get("label") or item["name"],
                    "description": item.get("description", ""),
                    "higher": bool(item.get("higher")),
                    "checked": item["name"] in chosen,
                    "id": f"feature-{item['name']}",
                }
            )
        return [
            {"name": name, "slug": _slug(name), "features": items, "higher": all(f["higher"] for f in items)}
            for name, items in groups.items()
        ]

    def model_param_fields(self) -> list[tuple[str, str, list[forms.BoundField]]]:
        """(kind, label, bound fields) per model family."""
        labels = dict(MLStrategy.ModelKind.choices)
        out = []
        for kind in labels:
            fields = [self[spec.field_name] for spec in self.model_params if spec.kind == kind]
            out.append((kind, labels[kind], fields))
        return out

    # -- to the service ----------------------------------------------------------------------
    def service_data(self) -> dict[str, Any]:
        d = self.cleaned_data
        kind = d["model_kind"]
        data: dict[str, Any] = {
            "name": d["name"],
            "description": d.get("description") or "",
            "features": list(d.get("features") or []),
            "label": {
                "kind": d["label_kind"],
                "horizon": d["label_horizon"],
                "threshold": d["label_threshold"],
                "stop": d["label_stop"],
                "target": d["label_target"],
            },
            "model_kind": kind,
            "model_params": {
                spec.name: d[spec.field_name]
                for spec in self.model_params
                if spec.kind == kind and d.get(spec.field_name) is not None
            },
            "decision": {
                "threshold": d["decision_threshold"],
                "exit_threshold": d["decision_exit_threshold"],
                "allow_short": bool(d.get("decision_allow_short")),
            },
            "validation": {
                "n_splits": d["validation_n_splits"],
                "embargo": d["validation_embargo"],
                "history_bars": d["validation_history_bars"],
            },
            "seed": d["seed"],
            "promotion_metric": d["promotion_metric"],
            "promotion_margin": d["promotion_margin"],
            "drift_threshold": d["drift_threshold"],
            "drift_window": d["drift_window"],
            "retrain_on_drift": bool(d.get("retrain_on_drift")),
            "schedule": self.schedule_data(),
        }
        if not self.locked:
            data["instrument_ids"] = list(d.get("instrument_ids") or [])
            data["timeframe"] = d["timeframe"]
            data["higher_timeframe"] = d.get("higher_timeframe") or ""
        return data


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _instrument_label(instrument: Instrument) -> str:
    label = f"{instrument.symbol} @ {instrument.venue}"
    return f"{label} (synthetic)" if instrument.is_synthetic else label


def ml_strategy_initial(
    ml_strategy: MLStrategy | None, *, schedule: Mapping[str, Any] | None = None, default_features: Sequence[str] = ()
) -> dict[str, Any]:
    """Form values for a new ML strategy (the model's defaults) or an existing one."""
    source = ml_strategy or MLStrategy()
    label = {"kind": "forward", "horizon": 12, "threshold": 0.0, "stop": 0.01, "target": 0.02, **(source.label or {})}
    decision = {"threshold": 0.55, "exit_threshold": 0.5, "allow_short": False, **(source.decision or {})}
    validation = {"n_splits": 5, "embargo": 12, "history_bars": 20_000, **(source.validation or {})}
    initial: dict[str, Any] = {
        "name": source.name,
        "description": source.description,
        "timeframe": source.timeframe or "1h",
        "higher_timeframe": source.higher_timeframe,
        "features": list(source.features or default_features),
        "label_kind": label["kind"],
        "label_horizon": label["horizon"],
        "label_threshold": label["threshold"],
        "label_stop": label["stop"],
        "label_target": label["target"],
        "model_kind": source.model_kind,
        "decision_threshold": decision["threshold"],
        "decision_exit_threshold": decision["exit_threshold"],
        "decision_allow_short": bool(decision["allow_short"]),
        "validation_n_splits": validation["n_splits"],
        "validation_embargo": validation["embargo"],
        "validation_history_bars": validation["history_bars"],
        "seed": source.seed,
        "promotion_metric": source.promotion_metric,
        "promotion_margin": source.promotion_margin,
        "drift_threshold": source.drift_threshold,
        "drift_window": source.drift_window,
        "retrain_on_drift": source.retrain_on_drift,
        **schedule_initial(schedule),
    }
    if ml_strategy is not None:
        initial["instrument_ids"] = [i.pk for i in ml_strategy.instruments.all()]
        for spec in model_params():
            if spec.kind == ml_strategy.model_kind and spec.name in (ml_strategy.model_params or {}):
                initial[spec.field_name] = ml_strategy.model_params[spec.name]
    return initial


class DeployForm(MLErrorsMixin):
    """Deploy on paper: the account and the capital it trades with."""

    account_id = forms.TypedChoiceField(coerce=int, label="Account")
    capital = forms.DecimalField(min_value=0, max_digits=28, decimal_places=10, initial=10_000, label="Capital")
    name = forms.CharField(required=False, max_length=120, label="Deployment name", help_text="Optional.")

    ALIASES = {"account": "account_id", "mode": "account_id"}

    def __init__(self, *args: Any, accounts: Iterable[TradingAccount] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["account_id"]
        assert isinstance(field, forms.TypedChoiceField)
        field.choices = [(a.pk, a.name) for a in accounts]

    def service_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"account_id": self.cleaned_data["account_id"], "capital": self.cleaned_data["capital"]}
        if self.cleaned_data.get("name"):
            data["name"] = self.cleaned_data["name"]
        return data


def _moment(value: Any) -> datetime | None:
    """A fold boundary as stored (epoch ms, an ISO string or a datetime) as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


class BacktestForm(MLErrorsMixin):
    """Backtest the ML strategy's promoted model as the strategy "ml" on one of its instruments.
    Both ends are optional (the stored series' first / last bar); the start defaults to where the
    promoted version's out-of-sample period began, since bars it was fitted on flatter it."""

    instrument_id = forms.TypedChoiceField(coerce=int, label="Instrument")
    start_at = forms.DateTimeField(
        required=False,
        label="From (UTC)",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(format="%Y-%m-%dT%H:%M", attrs={"type": "datetime-local"}),
    )
    end_at = forms.DateTimeField(
        required=False,
        label="To (UTC)",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(format="%Y-%m-%dT%H:%M", attrs={"type": "datetime-local"}),
    )

    ALIASES = {"start": "start_at", "end": "end_at", "start_at": "start_at", "end_at": "end_at"}

    def __init__(self, *args: Any, instruments: Iterable[Instrument] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["instrument_id"]
        assert isinstance(field, forms.TypedChoiceField)
        field.choices = [(i.pk, _instrument_label(i)) for i in instruments]

    def field_for_path(self, path: str) -> str | None:
        if path in ("instrument", "instrument_ids"):
            return "instrument_id"
        return super().field_for_path(path)

    @staticmethod
    def initial_for(ml: MLStrategy, promoted: Any) -> dict[str, Any]:
        initial: dict[str, Any] = {}
        first = ml.instruments.order_by("pk").first()
        if first is not None:
            initial["instrument_id"] = first.pk
        if promoted is not None:
            for fold in promoted.folds or []:
                test = fold.get("test") if isinstance(fold, Mapping) else None
                start = _moment(test[0]) if isinstance(test, list | tuple) and test else None
                if start is not None:
                    initial["start_at"] = start
                    break
        return initial

    def service_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"instrument_id": self.cleaned_data["instrument_id"]}
        for name, key in (("start_at", "start"), ("end_at", "end")):
            value = self.cleaned_data.get(name)
            if value is not None:
                data[key] = value if value.tzinfo else value.replace(tzinfo=UTC)
        return data
