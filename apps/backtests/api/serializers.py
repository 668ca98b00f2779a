"""Serializers of the backtests API: inputs (validated shape only; the services validate
meaning and name the field), outputs (list and detail), and query filters."""

from typing import Any

from rest_framework import serializers

from apps.backtests.models import (
    Backtest,
    BacktestTrade,
    JobStatus,
    MonteCarlo,
    Optimisation,
    OptimisationTrial,
    WalkForward,
)
from apps.marketdata import timeframes
from apps.marketdata.api import InstrumentRefSerializer, WhenField

_TIMEFRAME_ERRORS: dict[str, Any] = {
    "invalid_choice": f'Unknown timeframe "{{input}}"; use one of {", ".join(timeframes.TIMEFRAMES)}.'
}

# --- inputs -------------------------------------------------------------------------------------


class StrictInputSerializer(serializers.Serializer[Any]):
    """Refuses fields it does not know (a misspelt `strategy_key` must not silently become "no
    strategy", nor a misspelt `fee` silently run with the default)."""

    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "keys"):
            unknown = sorted(set(data.keys()) - set(self.fields))
            if unknown:
                known = ", ".join(sorted(self.fields))
                raise serializers.ValidationError({name: [f"Unknown field; this takes: {known}."] for name in unknown})
        return super().to_internal_value(data)


class RunInputSerializer(StrictInputSerializer):
    """What to run. Either `strategy` (+ `params`) or `rule_set` (runs as the `rules` strategy)."""

    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=120)
    strategy = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Registry key, e.g. sma_cross (see /strategies/)."
    )
    params = serializers.DictField(required=False, default=dict, help_text='e.g. {"fast": 10, "slow": 30}')
    rule_set = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="One of your rule sets."
    )
    instrument = serializers.IntegerField(help_text="Instrument id (see /instruments/).")
    timeframe = serializers.ChoiceField(choices=list(timeframes.TIMEFRAMES), error_messages=_TIMEFRAME_ERRORS)
    start = WhenField(required=False, allow_null=True, default=None, help_text="First bar (inclusive); empty = all.")
    end = WhenField(required=False, allow_null=True, default=None, help_text="Bars before this (exclusive).")
    settings = serializers.DictField(
        required=False,
        default=dict,
        help_text="Engine settings: cash, fill, entry, costs{...}, sizing{...}, exits{...}, instrument{...}.",
    )

    def run_kwargs(self) -> dict[str, Any]:
        data = self.validated_data
        return {
            "name": data["name"],
            "strategy_key": data["strategy"],
            "params": data["params"],
            "rule_set_id": data["rule_set"],
            "instrument_id": data["instrument"],
            "timeframe": data["timeframe"],
            "start_at": data["start"],
            "end_at": data["end"],
            "settings": data["settings"],
        }


class SearchInputSerializer(StrictInputSerializer):
    method = serializers.ChoiceField(choices=Optimisation.Method.choices, default=Optimisation.Method.GRID)
    objective = serializers.ChoiceField(choices=Optimisation.Objective.choices, default=Optimisation.Objective.SHARPE)
    space = serializers.DictField(
        required=False,
        default=dict,
        help_text='{param: {"low", "high", "step"} | {"choices": [...]}}; empty = every optimisable parameter.',
    )
    min_trades = serializers.IntegerField(default=1, help_text="Trials with fewer trades are infeasible.")
    n_trials = serializers.IntegerField(default=100, help_text="TPE trials (a grid runs all its combinations).")

    def search_kwargs(self) -> dict[str, Any]:
        data = self.validated_data
        return {key: data[key] for key in ("method", "objective", "space", "min_trades", "n_trials")}


class OptimisationInputSerializer(RunInputSerializer, SearchInputSerializer):
    seed = serializers.IntegerField(required=False, allow_null=True, default=None, help_text="TPE sampler seed.")


class WalkForwardInputSerializer(RunInputSerializer, SearchInputSerializer):
    mode = serializers.ChoiceField(choices=WalkForward.Mode.choices, default=WalkForward.Mode.ROLLING)
    windows_count = serializers.IntegerField(default=5)
    train_ratio = serializers.FloatField(default=0.7)
    n_trials = serializers.IntegerField(default=50, help_text="TPE trials per window.")


class MonteCarloInputSerializer(StrictInputSerializer):
    backtest = serializers.IntegerField(help_text="One of your succeeded backtests.")
    method = serializers.ChoiceField(choices=MonteCarlo.Method.choices, default=MonteCarlo.Method.RESAMPLE)
    simulations = serializers.IntegerField(default=5000)
    noise = serializers.FloatField(default=0.0, help_text="Std-dev of Gaussian noise added to each trade's return.")
    seed = serializers.IntegerField(required=False, allow_null=True, default=None)
    loss_threshold = serializers.FloatField(default=0.2, help_text="Probability of losing at least this share.")


class JobListQuerySerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=JobStatus.choices, required=False)
    strategy = serializers.CharField(required=False, help_text="Strategy key.")
    instrument = serializers.IntegerField(required=False, help_text="Instrument id.")

    def filters(self) -> dict[str, Any]:
        data = self.validated_data
        return {
            "status": data.get("status"),
            "strategy_key": data.get("strategy"),
            "instrument": data.get("instrument"),
        }


class MonteCarloListQuerySerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=JobStatus.choices, required=False)
    backtest = serializers.IntegerField(required=False, help_text="Backtest id.")


class TrialsQuerySerializer(serializers.Serializer[Any]):
    feasible = serializers.BooleanField(required=False, default=False, help_text="Only feasible trials.")


class HeatmapQuerySerializer(serializers.Serializer[Any]):
    x = serializers.CharField(help_text="Parameter on the x axis.")
    y = serializers.CharField(help_text="Parameter on the y axis.")


# --- outputs ------------------------------------------------------------------------------------


_JOB_FIELDS = ["id", "status", "progress", "error", "created_at", "started_at", "finished_at"]
_RUN_FIELDS = [
    "name",
    "strategy",
    "params",
    "rule_set",
    "instrument",
    "timeframe",
    "start",
    "end",
]


class _RunSerializer(serializers.ModelSerializer[Any]):
    strategy = serializers.CharField(source="strategy_key", read_only=True)
    rule_set = serializers.IntegerField(source="rule_set_id", read_only=True, allow_null=True)
    instrument = InstrumentRefSerializer(read_only=True)
    start = serializers.DateTimeField(source="start_at", read_only=True, allow_null=True)
    end = serializers.DateTimeField(source="end_at", read_only=True, allow_null=True)


class BacktestSerializer(_RunSerializer):
    class Meta:
        model = Backtest
        fields = [
            *_JOB_FIELDS,
            *_RUN_FIELDS,
            "metrics",
            "is_lookahead_biased",
            "candles_count",
            "duration_ms",
            "rerun_of",
        ]
        read_only_fields = fields


class BacktestDetailSerializer(BacktestSerializer):
    class Meta(BacktestSerializer.Meta):
        fields = [*BacktestSerializer.Meta.fields, "rules", "settings", "lookahead", "timings"]
        read_only_fields = fields


class EquitySerializer(serializers.Serializer[Any]):
    t = serializers.ListField(child=serializers.IntegerField(), help_text="Bar open times, epoch milliseconds.")
    equity = serializers.ListField(child=serializers.FloatField(allow_null=True))
    drawdown = serializers.ListField(child=serializers.FloatField(allow_null=True), help_text="<= 0 fractions.")
    benchmark = serializers.ListField(child=serializers.FloatField(allow_null=True), help_text="Buy and hold.")
    points = serializers.IntegerField(help_text="Points returned (downsampled, extremes kept).")
    bars = serializers.IntegerField(help_text="Bars in the run.")


class BacktestTradeSerializer(serializers.ModelSerializer[BacktestTrade]):
    class Meta:
        model = BacktestTrade
        fields = [
            "number",
            "side",
            "entry_at",
            "entry_price",
            "exit_at",
            "exit_price",
            "size",
            "fees",
            "pnl",
            "return_pct",
            "bars_held",
            "exit_reason",
        ]
        read_only_fields = fields


class OptimisationSerializer(_RunSerializer):
    class Meta:
        model = Optimisation
        fields = [
            *_JOB_FIELDS,
            *_RUN_FIELDS,
            "method",
            "objective",
            "space",
            "min_trades",
            "n_trials",
            "trials_done",
            "best_params",
            "best_value",
        ]
        read_only_fields = fields


class OptimisationDetailSerializer(OptimisationSerializer):
    class Meta(OptimisationSerializer.Meta):
        fields = [*OptimisationSerializer.Meta.fields, "best_metrics", "settings", "seed", "chunks_total"]
        read_only_fields = fields


class OptimisationTrialSerializer(serializers.ModelSerializer[OptimisationTrial]):
    class Meta:
        model = OptimisationTrial
        fields = ["number", "params", "value", "is_feasible", "metrics", "error"]
        read_only_fields = fields


class HeatmapSerializer(serializers.Serializer[Any]):
    x = serializers.ListField(child=serializers.JSONField(), help_text="Values of the x parameter (columns).")
    y = serializers.ListField(child=serializers.JSONField(), help_text="Values of the y parameter (rows).")
    z = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
        help_text="z[i][j]: best objective with y = y[i] and x = x[j]; null where no feasible trial.",
    )


class WalkForwardSerializer(_RunSerializer):
    class Meta:
        model = WalkForward
        fields = [
            *_JOB_FIELDS,
            *_RUN_FIELDS,
            "mode",
            "windows_count",
            "train_ratio",
            "method",
            "objective",
            "space",
            "min_trades",
            "n_trials",
            "metrics",
        ]
        read_only_fields = fields


class WalkForwardDetailSerializer(WalkForwardSerializer):
    class Meta(WalkForwardSerializer.Meta):
        fields = [*WalkForwardSerializer.Meta.fields, "settings", "windows", "equity"]
        read_only_fields = fields


class BacktestRefSerializer(serializers.ModelSerializer[Backtest]):
    strategy = serializers.CharField(source="strategy_key", read_only=True)
    instrument = InstrumentRefSerializer(read_only=True)

    class Meta:
        model = Backtest
        fields = ["id", "name", "strategy", "instrument", "timeframe"]
        read_only_fields = fields


class MonteCarloSerializer(serializers.ModelSerializer[MonteCarlo]):
    backtest = BacktestRefSerializer(read_only=True)

    class Meta:
        model = MonteCarlo
        fields = [*_JOB_FIELDS, "backtest", "method", "simulations", "noise", "seed", "loss_threshold"]
        read_only_fields = fields


class MonteCarloDetailSerializer(MonteCarloSerializer):
    class Meta(MonteCarloSerializer.Meta):
        fields = [*MonteCarloSerializer.Meta.fields, "results"]
        read_only_fields = fields
