"""Labels against hand-computed tiny examples."""

import numpy as np
import pandas as pd
import pytest

from apps.ml.pipeline.errors import MLInputError
from apps.ml.pipeline.labels import LabelSpec, labels_build


def candles(close, high=None, low=None) -> pd.DataFrame:
    close = np.asarray(close, dtype=float)
    index = pd.date_range("2024-01-01", periods=close.size, freq="1h", tz="UTC")
    return pd.DataFrame(
        {
            "open": close,
            "high": close if high is None else np.asarray(high, dtype=float),
            "low": close if low is None else np.asarray(low, dtype=float),
            "close": close,
            "volume": np.ones(close.size),
        },
        index=index,
    )


def assert_labels(labels, y, end):
    np.testing.assert_array_equal(labels.y.to_numpy(), np.asarray(y, dtype=float))
    np.testing.assert_array_equal(labels.end, np.asarray(end, dtype=np.int64))


def test_forward_label_compares_the_return_with_the_threshold():
    # closes 100, 101, 100, 103, 103; horizon 2; threshold 1%:
    # t0: 100/100-1 = 0 -> 0; t1: 103/101-1 = 1.98% -> 1; t2: 103/100-1 = 3% -> 1; t3, t4 unknown.
    labels = labels_build(candles([100, 101, 100, 103, 103]), LabelSpec(kind="forward", horizon=2, threshold=0.01))
    assert_labels(labels, [0, 1, 1, np.nan, np.nan], [2, 3, 4, -1, -1])
    assert labels.y.index.equals(candles([100, 101, 100, 103, 103]).index)


def test_forward_label_needs_strictly_more_than_the_threshold():
    labels = labels_build(candles([100, 100, 101]), LabelSpec(kind="forward", horizon=1, threshold=0.0))
    assert_labels(labels, [0, 1, np.nan], [1, 2, -1])


def test_triple_barrier_upper_first_lower_first_both_and_neither():
    # target 2% (upper 102 from 100), stop 1% (lower 99 from 100), horizon 3.
    close = [100, 100.5, 101, 100.2, 100, 100, 100, 100]
    high = [100, 100.6, 102.5, 100.3, 100, 100, 100, 100]  # t0: bar 2 reaches 102 -> 1 at bar 2
    low = [100, 100.4, 100.9, 98.0, 100, 100, 100, 100]
    spec = LabelSpec(kind="triple_barrier", horizon=3, stop=0.01, target=0.02)
    labels = labels_build(candles(close, high, low), spec)
    # t0 (100: upper 102, lower 99): bar 2 high 102.5 -> 1, end 2.
    # t1 (100.5: upper 102.51, lower 99.495): bar 2 high 102.5 < 102.51; bar 3 low 98 -> 0, end 3.
    # t2 (101: upper 103.02, lower 99.99): bar 3 low 98 -> 0, end 3.
    # t3 (100.2: upper 102.204, lower 99.198): bars 4-6 flat at 100, no touch; close[6]=100 < 100.2 -> 0, end 6.
    # t4 (100): flat -> close[7] = 100 not > 100 -> 0, end 7.
    assert_labels(labels, [1, 0, 0, 0, 0, np.nan, np.nan, np.nan], [2, 3, 3, 6, 7, -1, -1, -1])


def test_triple_barrier_both_barriers_in_one_bar_counts_the_stop():
    # t0: bar 1 reaches both 102 and 99 -> 0 at bar 1; t1: bars 2-3 touch nothing and close[3]
    # (100.5) > close[1] (100) -> 1 at bar 3.
    close = [100, 100, 100, 100.5]
    high = [100, 103, 100, 100.5]
    low = [100, 98, 100, 100.5]
    labels = labels_build(
        candles(close, high, low), LabelSpec(kind="triple_barrier", horizon=2, stop=0.01, target=0.02)
    )
    assert_labels(labels, [0, 1, np.nan, np.nan], [1, 3, -1, -1])


def test_triple_barrier_time_barrier_uses_the_close():
    close = [100, 100.5, 100.8]
    labels = labels_build(candles(close), LabelSpec(kind="triple_barrier", horizon=2, stop=0.05, target=0.05))
    assert_labels(labels, [1, np.nan, np.nan], [2, -1, -1])


def test_too_short_history_gives_no_labels():
    labels = labels_build(candles([100, 101]), LabelSpec(kind="forward", horizon=5))
    assert labels.y.isna().all() and (labels.end == -1).all()


def test_spec_round_trips_through_a_dict():
    spec = LabelSpec.from_dict({"kind": "triple_barrier", "horizon": 24, "stop": 0.01, "target": 0.03})
    assert spec == LabelSpec(kind="triple_barrier", horizon=24, threshold=0.0, stop=0.01, target=0.03)
    assert LabelSpec.from_dict(spec.as_dict()) == spec
    assert LabelSpec.from_dict(None) == LabelSpec()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kind": "sideways"}, "label.kind"),
        ({"horizon": 0}, "label.horizon"),
        ({"horizon": 2.5}, "label.horizon"),
        ({"horizon": True}, "label.horizon"),
        ({"threshold": "high"}, "label.threshold"),
        ({"threshold": 0.9}, "label.threshold"),
        ({"stop": 0.0}, "label.stop"),
        ({"target": float("nan")}, "label.target"),
        ({"colour": "red"}, "label.colour"),
        ("forward", "label"),
    ],
)
def test_spec_refuses_bad_input_naming_the_field(data, field):
    with pytest.raises(MLInputError) as caught:
        LabelSpec.from_dict(data)
    assert caught.value.field == field
    assert caught.value.extra["fields"] == {field: [caught.value.message]}
