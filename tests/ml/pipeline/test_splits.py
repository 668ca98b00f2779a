"""Purged walk-forward: train strictly before test, purged and embargoed, in time order."""

import itertools

import numpy as np
import pandas as pd
import pytest

from apps.ml.pipeline.errors import MLInputError
from apps.ml.pipeline.splits import purged_walk_forward

HOUR = 3600 * 1_000_000_000


def pooled(n_bars: int, instruments: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Several instruments' hourly samples merged in time order; labels known `horizon` bars later."""
    times = np.repeat(np.arange(n_bars, dtype=np.int64) * HOUR, instruments)
    return times, times + horizon * HOUR


@pytest.mark.parametrize(("instruments", "horizon", "embargo"), [(1, 12, 12), (3, 24, 5), (2, 1, 0)])
def test_folds_are_ordered_purged_and_embargoed(instruments, horizon, embargo):
    # given pooled samples
    times, ends = pooled(3000, instruments, horizon)
    # when split
    splits = purged_walk_forward(times, ends, n_splits=5, embargo=embargo, min_train=100, bar_ns=HOUR)
    # then: five consecutive test blocks covering the end of the data, in time order
    assert len(splits) == 5
    tests = np.concatenate([s.test for s in splits])
    np.testing.assert_array_equal(tests, np.arange(tests[0], times.size))
    assert tests.size >= times.size * 5 // 6 - instruments
    for previous, split in itertools.pairwise(splits):
        assert times[previous.test].max() < times[split.test].min()
    for split in splits:
        start = times[split.test].min()
        # no timestamp is split between a test block and what precedes it
        assert not np.any(times[: split.test[0]] == start)
        # no training label ends at or after the test block's first bar (purging)
        assert ends[split.train].max() < start
        # the embargo: nothing trained on within `embargo` bars before the test block
        assert times[split.train].max() < start - embargo * HOUR
        # and everything else before the block is trained on
        expected = np.flatnonzero((times < start - embargo * HOUR) & (ends < start))
        np.testing.assert_array_equal(split.train, expected)
        assert np.all(np.diff(split.train) > 0)


def test_a_timedelta_embargo_and_an_inferred_bar_size():
    times, ends = pooled(1200, 1, 3)
    by_bars = purged_walk_forward(times, ends, n_splits=3, embargo=6, min_train=50)
    by_time = purged_walk_forward(times, ends, n_splits=3, embargo=pd.Timedelta(hours=6), min_train=50)
    for a, b in zip(by_bars, by_time, strict=True):
        np.testing.assert_array_equal(a.train, b.train)
        np.testing.assert_array_equal(a.test, b.test)
        assert times[a.train].max() < times[a.test].min() - 6 * HOUR


def test_too_little_history_names_the_numbers():
    times, ends = pooled(600, 1, 3)
    with pytest.raises(MLInputError) as caught:
        purged_walk_forward(times, ends, n_splits=5, embargo=10, min_train=200, bar_ns=HOUR)
    error = caught.value
    assert error.field == "history"
    # 600 samples / 6 = 100 per block, the first test block starts at bar 100: purging keeps the
    # bars whose label ends before it (t + 3 < 100: t <= 96), the embargo those more than 10 bars
    # before it (t < 90): bars 0..89, 90 samples.
    assert "fold 1 of 5 would train on 90 samples" in error.message
    assert "at least 200" in error.message


def test_no_samples_at_all_is_too_little_history():
    with pytest.raises(MLInputError) as caught:
        purged_walk_forward(
            np.arange(3, dtype=np.int64), np.arange(3, dtype=np.int64), n_splits=5, embargo=0, min_train=1
        )
    assert caught.value.field == "history"
    assert "3 labelled samples" in caught.value.message


@pytest.mark.parametrize("n_splits", [1, 21, 2.0, True])
def test_n_splits_out_of_range(n_splits):
    times, ends = pooled(600, 1, 1)
    with pytest.raises(MLInputError) as caught:
        purged_walk_forward(times, ends, n_splits=n_splits, embargo=0, min_train=1, bar_ns=HOUR)
    assert caught.value.field == "validation.n_splits"
