"""Search spaces and the grid: Params bounds, the user's narrowing, enumeration and refusal."""

import itertools
from dataclasses import dataclass

import pytest

from apps.backtests.research.errors import ResearchInputError
from apps.backtests.research.space import FLOAT_GRID_POINTS, dimension_values, grid_points, grid_size, space_build
from apps.strategies.errors import InvalidParamsError
from apps.strategies.params import Dimension, StrategyParams, param


@dataclass(frozen=True)
class CrossParams(StrategyParams):
    fast: int = param(10, low=2, high=50)
    slow: int = param(30, low=3, high=200)
    band: float = param(0.5, low=0.0, high=2.0)
    kind: str = param("sma", choices=("sma", "ema"))
    use_filter: bool = param(False)
    label: str = param("x", optimise=False)

    def check(self) -> None:
        if self.fast >= self.slow:
            raise InvalidParamsError("fast must be below slow", field="params.fast")


def test_space_build_defaults_to_every_optimisable_param():
    dims = space_build(CrossParams, None)
    assert [(d.name, d.kind) for d in dims] == [
        ("fast", "int"),
        ("slow", "int"),
        ("band", "float"),
        ("kind", "choice"),
        ("use_filter", "bool"),
    ]


def test_space_build_narrows_to_the_named_params():
    dims = space_build(CrossParams, {"fast": {"low": 5, "high": 20, "step": 5}, "kind": {"choices": ["ema"]}})
    assert dims == [Dimension("fast", "int", 5, 20, 5), Dimension("kind", "choice", choices=("ema",))]


def test_space_build_keeps_the_params_bounds_where_the_user_gives_none():
    (dim,) = space_build(CrossParams, {"slow": {"high": 100}})
    assert (dim.low, dim.high, dim.step) == (3, 100, None)


@pytest.mark.parametrize(
    ("space", "field"),
    [
        ({"fast": {"low": 1}}, "space.fast.low"),
        ({"fast": {"high": 51}}, "space.fast.high"),
        ({"fast": {"low": 20, "high": 10}}, "space.fast.high"),
        ({"fast": {"low": 2.5}}, "space.fast.low"),
        ({"fast": {"step": 0}}, "space.fast.step"),
        ({"fast": {"step": "2"}}, "space.fast.step"),
        ({"fast": {"lo": 3}}, "space.fast.lo"),
        ({"fast": {"choices": [1, 5]}}, "space.fast.choices"),
        ({"fast": {"choices": []}}, "space.fast.choices"),
        ({"fast": {"choices": [5], "low": 3}}, "space.fast"),
        ({"kind": {"choices": ["wma"]}}, "space.kind.choices"),
        ({"use_filter": {"choices": [1]}}, "space.use_filter.choices"),
        ({"kind": {"low": 1}}, "space.kind"),
        ({"nope": {}}, "space.nope"),
        ({"label": {}}, "space.label"),
        ({"fast": 3}, "space.fast"),
        (["fast"], "space"),
    ],
)
def test_space_build_refusals_name_the_field(space, field):
    with pytest.raises(ResearchInputError) as caught:
        space_build(CrossParams, space)
    assert caught.value.field == field
    assert field in caught.value.extra["fields"]


def test_dimension_values_step_ints_and_spread_floats():
    assert dimension_values(Dimension("n", "int", 2, 11, 3)) == [2, 5, 8, 11]
    assert dimension_values(Dimension("n", "int", 2, 12, 3)) == [2, 5, 8, 11]
    assert dimension_values(Dimension("n", "int", 4, 7)) == [4, 5, 6, 7]
    assert dimension_values(Dimension("x", "float", 0.1, 0.5, 0.1)) == [0.1, 0.2, 0.3, 0.4, 0.5]
    spread = dimension_values(Dimension("x", "float", 0.0, 2.0))
    assert len(spread) == FLOAT_GRID_POINTS
    assert spread[0] == 0.0 and spread[-1] == 2.0
    assert all(b > a for a, b in itertools.pairwise(spread))
    assert dimension_values(Dimension("b", "bool", choices=(False, True))) == [False, True]


def test_grid_points_enumerates_every_combination_within_bounds():
    dims = [Dimension("fast", "int", 2, 6, 2), Dimension("kind", "choice", choices=("sma", "ema"))]
    points = grid_points(dims, limit=100)
    assert len(points) == grid_size(dims) == 6
    assert {(p["fast"], p["kind"]) for p in points} == {(f, k) for f in (2, 4, 6) for k in ("sma", "ema")}


def test_grid_points_skips_combinations_the_params_refuse():
    dims = space_build(
        CrossParams, {"fast": {"low": 5, "high": 30, "step": 5}, "slow": {"low": 10, "high": 30, "step": 5}}
    )
    points = grid_points(dims, limit=100, params_cls=CrossParams)
    expected = {(f, s) for f in range(5, 31, 5) for s in range(10, 31, 5) if f < s}
    assert {(p["fast"], p["slow"]) for p in points} == expected
    assert len(points) == len(expected)


def test_grid_points_skips_against_the_base_params():
    dims = space_build(CrossParams, {"fast": {"low": 10, "high": 50, "step": 10}})
    points = grid_points(dims, limit=100, params_cls=CrossParams, base_params={"slow": 35})
    assert [p["fast"] for p in points] == [10, 20, 30]


def test_grid_points_refuses_above_the_limit():
    dims = space_build(CrossParams, {"fast": {}, "slow": {}})
    with pytest.raises(ResearchInputError) as caught:
        grid_points(dims, limit=1000, params_cls=CrossParams)
    assert caught.value.field == "space"
    assert "1,000" in caught.value.message


def test_grid_points_limit_counts_only_valid_combinations():
    # 10 x 10 raw, of which 45 have fast < slow: a limit of 50 admits them, 44 does not.
    dims = [Dimension("fast", "int", 1, 10), Dimension("slow", "int", 1, 10)]
    bounded = space_build(CrossParams, {"fast": {"low": 2, "high": 11}, "slow": {"low": 3, "high": 12}})
    assert grid_size(bounded) == grid_size(dims) == 100
    valid = sum(1 for f in range(2, 12) for s in range(3, 13) if f < s)
    assert len(grid_points(bounded, limit=valid, params_cls=CrossParams)) == valid
    with pytest.raises(ResearchInputError, match=f"{valid} parameter combinations"):
        grid_points(bounded, limit=valid - 1, params_cls=CrossParams)
