"""Purged walk-forward validation: test on the future, train on the past, and make sure no
training label has seen the test block.

The rule, in times (ns) so several instruments' samples can be pooled (sorted by time):

- the samples are cut into ``n_splits + 1`` consecutive parts of (about) equal count; the last
  ``n_splits`` are the test blocks, in time order. A block boundary never splits a timestamp:
  all samples at the first test time belong to the block;
- the training set of a block starting at time ``s`` is every sample with
  ``time < s - embargo`` (the embargo gap, against serially correlated features) and
  ``end < s`` (purging: a sample whose label outcome is known only at or after ``s`` used
  prices of the test block);
- too few training samples (below ``min_train``) or an empty test block is refused with
  MLInputError(field="history") naming the numbers.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from apps.ml.pipeline.errors import MLInputError

MAX_SPLITS = 20


@dataclass(frozen=True)
class Split:
    """Positions (into the sorted samples) of one fold's training and test samples."""

    train: np.ndarray
    test: np.ndarray


def embargo_ns(embargo: pd.Timedelta | int, bar_ns: int | None, times: np.ndarray) -> int:
    """The embargo in ns: a Timedelta as is, an int as that many bars of ``bar_ns`` (inferred as
    the smallest positive gap between sample times when not given)."""
    if isinstance(embargo, pd.Timedelta):
        return int(embargo.value)
    if bar_ns is None:
        gaps = np.diff(np.unique(times))
        bar_ns = int(gaps.min()) if gaps.size else 0
    return int(embargo) * int(bar_ns)


def purged_walk_forward(
    times: np.ndarray,
    ends: np.ndarray,
    *,
    n_splits: int,
    embargo: pd.Timedelta | int,
    min_train: int,
    bar_ns: int | None = None,
) -> list[Split]:
    """The folds of the module docstring. ``times`` (int64 ns, sorted ascending) and ``ends``
    (int64 ns, the time each sample's outcome is known) are per sample."""
    times = np.asarray(times, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    if isinstance(n_splits, bool) or not isinstance(n_splits, int) or not 2 <= n_splits <= MAX_SPLITS:
        raise MLInputError(f"The number of splits must be 2 to {MAX_SPLITS}.", field="validation.n_splits")
    if isinstance(embargo, int) and embargo < 0:
        raise MLInputError("The embargo cannot be negative.", field="validation.embargo")
    if times.size and np.any(np.diff(times) < 0):
        raise ValueError("times must be sorted ascending")
    gap = embargo_ns(embargo, bar_ns, times)
    size = times.size
    part = size // (n_splits + 1)
    if part == 0:
        raise MLInputError(
            f"Too little history: {size} labelled samples cannot make {n_splits} test blocks; "
            "use more history or fewer splits.",
            field="history",
        )
    bounds = [_first_at(times, times[size - (n_splits - k) * part]) for k in range(n_splits)] + [size]
    splits = []
    for k in range(n_splits):
        first, stop = bounds[k], bounds[k + 1]
        if stop <= first:
            raise MLInputError(
                f"Too little history: test block {k + 1} of {n_splits} is empty; use more history or fewer splits.",
                field="history",
            )
        start_time = times[first]
        train = np.flatnonzero((times[:first] < start_time - gap) & (ends[:first] < start_time))
        if train.size < min_train:
            raise MLInputError(
                f"Too little history: fold {k + 1} of {n_splits} would train on {train.size} samples "
                f"(at least {min_train} needed) out of {size}; use more history, fewer splits or a shorter "
                "horizon / embargo.",
                field="history",
            )
        splits.append(Split(train=train, test=np.arange(first, stop)))
    return splits


def _first_at(times: np.ndarray, value: int) -> int:
    return int(np.searchsorted(times, value, side="left"))
