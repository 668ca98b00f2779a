"""PSI against hand-computed values and its rules of thumb."""

import numpy as np
import pandas as pd
import pytest

from apps.ml.pipeline.drift import psi, reference_distribution


def test_hand_computed_two_bin_example():
    # reference: one inner edge at 0, half the values on each side
    reference = {"x": {"edges": [0.0], "p": [0.5, 0.5]}}
    # live: one value below 0, three at or above it -> a = (0.25, 0.75)
    live = pd.DataFrame({"x": [-1.0, 0.0, 1.0, 2.0, np.nan]})
    expected = (0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5)
    assert psi(reference, live)["x"] == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.27465, abs=1e-5)


def test_reference_has_inner_decile_edges_and_proportions():
    values = np.arange(1000, dtype=float)
    ref = reference_distribution(pd.DataFrame({"x": values, "empty": np.nan}))
    assert ref["x"]["edges"] == pytest.approx(list(np.quantile(values, np.arange(1, 10) / 10)))
    assert ref["x"]["p"] == pytest.approx([0.1] * 10)
    assert ref["empty"] == {"edges": [], "p": []}


def test_a_constant_feature_has_one_edge_and_no_drift_against_itself():
    ref = reference_distribution(pd.DataFrame({"x": np.zeros(50)}))
    assert ref["x"]["edges"] == [0.0]
    assert psi(ref, pd.DataFrame({"x": np.zeros(10)})) == {"x": 0.0}


def test_same_distribution_is_small_and_a_shifted_one_large():
    rng = np.random.default_rng(0)
    ref = reference_distribution(pd.DataFrame({"x": rng.normal(size=20_000), "y": rng.exponential(size=20_000)}))
    same = psi(ref, pd.DataFrame({"x": rng.normal(size=2000), "y": rng.exponential(size=2000)}))
    shifted = psi(ref, pd.DataFrame({"x": rng.normal(0.8, 1.0, size=2000), "y": rng.exponential(2.0, size=2000)}))
    assert same["x"] < 0.1 and same["y"] < 0.1
    assert shifted["x"] > 0.25 and shifted["y"] > 0.25


def test_values_beyond_the_training_range_fall_in_the_open_outer_bins():
    ref = reference_distribution(pd.DataFrame({"x": np.arange(100, dtype=float)}))
    far = psi(ref, pd.DataFrame({"x": np.full(100, 1e6)}))["x"]
    # everything in the top bin: a = 1 there (e = 0.1) and the 1e-4 floor elsewhere (e = 0.1)
    expected = (1 - 0.1) * np.log(1 / 0.1) + 9 * (1e-4 - 0.1) * np.log(1e-4 / 0.1)
    assert far == pytest.approx(expected, rel=1e-9)


def test_features_without_values_are_left_out():
    ref = reference_distribution(pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [np.nan] * 3}))
    assert psi(ref, pd.DataFrame({"x": [np.nan, np.nan], "y": [1.0, 2.0]})) == {}
    assert set(psi(ref, pd.DataFrame({"x": [1.0]}))) == {"x"}
