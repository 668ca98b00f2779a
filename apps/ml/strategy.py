"""The registered strategy ``ml``: the signals of an ML strategy's model.

Params ``model`` (the MLStrategy id) and ``version`` (a ModelVersion number; 0, the default,
means the version promoted now, so a deployment always trades the promoted model). The model is
loaded by :mod:`apps.ml.runtime` (a per-process cache keyed by the version and its artifact hash)
and applied by :func:`apps.ml.pipeline.bundle.bundle_signals`: features on the candles given,
the probability that the label is 1, and the decision rule (enter long above ``threshold``,
exit below ``exit_threshold``; shorts mirrored when allowed).

Hidden from the strategy catalogue (it needs a trained model): ML strategies are created, trained,
backtested and deployed from their own pages, and only by their owner (``assert_usable``).
"""

from dataclasses import dataclass
from typing import Any

import pandas as pd

from apps.strategies.base import Strategy
from apps.strategies.params import StrategyParams, param
from apps.strategies.registry import register


@dataclass(frozen=True)
class MLParams(StrategyParams):
    model: int = param(1, low=1, high=2**31 - 1, help="The ML strategy whose model trades", optimise=False)
    version: int = param(
        0, low=0, high=2**31 - 1, help="Model version number; 0 = the promoted version", optimise=False
    )


@register
class MLModelStrategy(Strategy):
    """Trades an ML strategy's model: enter when its predicted probability clears the threshold."""

    key = "ml"
    name = "ML model"
    Params = MLParams
    is_public = False
    # The pipeline's warm-up makes the features on a window of that many bars bit-identical to
    # the full history's, and a window of exactly the warm-up gets one prediction: its last bar.
    exact_warmup = True
    params: MLParams

    def warmup(self) -> int:
        from apps.ml import runtime

        return runtime.strategy_warmup(ml_strategy_id=self.params.model)

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        from apps.ml import runtime
        from apps.ml.pipeline.bundle import bundle_signals

        bundle = runtime.bundle_for(ml_strategy_id=self.params.model, version=self.params.version)
        return bundle_signals(bundle, candles)

    def assert_usable(self, *, user: Any, timeframe: str | None) -> None:
        from apps.ml import runtime

        runtime.assert_usable(
            ml_strategy_id=self.params.model, user=user, timeframe=timeframe, version=self.params.version
        )
