"""Optimisation search spaces: the Params bounds, optionally narrowed by the user, and the grid.

A user's space is ``{param: {"low": .., "high": .., "step": ..} | {"choices": [...]}}``. Naming a
parameter puts it in the search; parameters left out keep their given (or default) value. An empty
space searches every parameter the strategy declares as optimisable. Every narrowed range must lie
within the parameter's bounds; errors name the field (``space.fast.low``).

Grid values: an int axis steps by its step (the user's, else the Params', else 1) from low up to
high; a float axis steps by its step when it has one, else takes :data:`FLOAT_GRID_POINTS` evenly
spaced points from low to high inclusive; booleans and choices take every choice.
"""

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from apps.backtests.research.errors import ResearchInputError
from apps.strategies.errors import InvalidParamsError
from apps.strategies.params import Dimension, StrategyParams, params_build, search_space

FLOAT_GRID_POINTS = 10
# Refuse before enumerating when the raw product is this many times the limit: too many
# combinations to check one by one for the Params' own rules (fast < slow).
_ENUMERATION_FACTOR = 20
_SPEC_KEYS = frozenset({"low", "high", "step", "choices"})


def space_build(params_cls: type[StrategyParams], space: Mapping[str, Any] | None = None) -> list[Dimension]:
    """The dimensions to search: ``params_cls``'s optimisable ones, or those named in ``space``,
    narrowed to the user's ranges. Raises ResearchInputError naming the field."""
    if not space:
        dims = search_space(params_cls)
        if not dims:
            raise ResearchInputError("This strategy has no parameters to optimise.", field="space")
        return dims
    if not isinstance(space, Mapping):
        raise ResearchInputError("The search space must be an object of parameter: range.", field="space")
    try:
        dims = search_space(params_cls, only=list(space))
    except InvalidParamsError as exc:
        raise ResearchInputError(exc.message, field=exc.field) from None
    return [_narrow(dim, space[dim.name]) for dim in dims]


def _narrow(dim: Dimension, spec: Any) -> Dimension:
    field = f"space.{dim.name}"
    if spec is None or spec == {}:
        return dim
    if not isinstance(spec, Mapping):
        raise ResearchInputError(f"{dim.name}: give {{low, high, step}} or {{choices: [...]}}.", field=field)
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise ResearchInputError(f"{dim.name}: unknown key '{unknown[0]}'.", field=f"{field}.{unknown[0]}")
    if "choices" in spec:
        if set(spec) != {"choices"}:
            raise ResearchInputError(f"{dim.name}: give either choices or low/high/step.", field=field)
        return _narrow_choices(dim, spec["choices"])
    if dim.kind not in ("int", "float"):
        raise ResearchInputError(f"{dim.name} is not numeric: give its choices.", field=field)
    assert dim.low is not None and dim.high is not None
    low = _bound(dim, spec, "low", dim.low)
    high = _bound(dim, spec, "high", dim.high)
    if low > high:
        raise ResearchInputError(f"{dim.name}: low must not exceed high.", field=f"{field}.high")
    step = dim.step
    if spec.get("step") is not None:
        step = _number(dim, spec["step"], "step")
        if step <= 0:
            raise ResearchInputError(f"{dim.name}: step must be positive.", field=f"{field}.step")
    return replace(dim, low=low, high=high, step=step)


def _number(dim: Dimension, value: Any, key: str) -> float:
    field = f"space.{dim.name}.{key}"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ResearchInputError(f"{dim.name}: {key} must be a number.", field=field)
    if dim.kind == "int" and not float(value).is_integer():
        raise ResearchInputError(f"{dim.name}: {key} must be a whole number.", field=field)
    return int(value) if dim.kind == "int" else float(value)


def _bound(dim: Dimension, spec: Mapping[str, Any], key: str, default: float) -> float:
    if spec.get(key) is None:
        return default
    value = _number(dim, spec[key], key)
    assert dim.low is not None and dim.high is not None
    if not dim.low <= value <= dim.high:
        raise ResearchInputError(
            f"{dim.name}: {key} must lie within the parameter's bounds {dim.low:g}..{dim.high:g}.",
            field=f"space.{dim.name}.{key}",
        )
    return value


def _narrow_choices(dim: Dimension, choices: Any) -> Dimension:
    field = f"space.{dim.name}.choices"
    if isinstance(choices, str | bytes) or not isinstance(choices, Sequence) or not choices:
        raise ResearchInputError(f"{dim.name}: choices must be a non-empty list.", field=field)
    picked: list[Any] = []
    for choice in choices:
        if dim.kind in ("int", "float"):
            value: Any = _number(dim, choice, "choices")
            assert dim.low is not None and dim.high is not None
            if not dim.low <= value <= dim.high:
                raise ResearchInputError(
                    f"{dim.name}: {value:g} is outside the parameter's bounds {dim.low:g}..{dim.high:g}.", field=field
                )
        else:
            value = choice
            assert dim.choices is not None
            if value not in dim.choices or (isinstance(value, bool) != any(isinstance(c, bool) for c in dim.choices)):
                allowed = ", ".join(str(c) for c in dim.choices)
                raise ResearchInputError(f"{dim.name}: {choice!r} is not one of {allowed}.", field=field)
        if value not in picked:
            picked.append(value)
    return Dimension(dim.name, "choice", choices=tuple(picked))


def dimension_values(dim: Dimension) -> list[Any]:
    """The grid's values along ``dim`` (see the module docstring), ascending for numbers."""
    if dim.kind in ("choice", "bool"):
        return list(dim.choices or ())
    assert dim.low is not None and dim.high is not None
    if dim.kind == "int":
        step = max(1, int(dim.step or 1))
        return list(range(int(dim.low), int(dim.high) + 1, step))
    if dim.step:
        count = math.floor((dim.high - dim.low) / dim.step + 1e-9) + 1
        return [round(dim.low + i * dim.step, 12) for i in range(count)]
    if dim.low == dim.high:
        return [float(dim.low)]
    span = dim.high - dim.low
    return [round(dim.low + span * i / (FLOAT_GRID_POINTS - 1), 12) for i in range(FLOAT_GRID_POINTS)]


def grid_size(dims: Sequence[Dimension]) -> int:
    """The number of raw combinations (before the Params' own rules are applied)."""
    return math.prod(len(dimension_values(dim)) for dim in dims)


def grid_points(
    dims: Sequence[Dimension],
    *,
    limit: int,
    params_cls: type[StrategyParams] | None = None,
    base_params: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every combination of the dimensions' values, in a fixed order (the last axis fastest).

    With ``params_cls``, combinations its ``check()`` (or bounds) refuses once merged over
    ``base_params`` are skipped (fast >= slow). Refuses with ResearchInputError (field ``space``)
    when more than ``limit`` combinations would remain.
    """
    raw = grid_size(dims)
    if raw > limit and (params_cls is None or raw > limit * _ENUMERATION_FACTOR):
        raise _too_many(raw, limit)
    points: list[dict[str, Any]] = []
    for point in _combinations(dims):
        if params_cls is not None and not _is_valid(params_cls, {**(base_params or {}), **point}):
            continue
        points.append(point)
        if len(points) > limit:
            raise _too_many(_count_valid(dims, params_cls, base_params), limit)
    return points


def _combinations(dims: Sequence[Dimension]) -> Iterator[dict[str, Any]]:
    names = [dim.name for dim in dims]
    for values in itertools.product(*(dimension_values(dim) for dim in dims)):
        yield dict(zip(names, values, strict=True))


def _is_valid(params_cls: type[StrategyParams], values: Mapping[str, Any]) -> bool:
    try:
        params_build(params_cls, values)
    except InvalidParamsError:
        return False
    return True


def _count_valid(
    dims: Sequence[Dimension], params_cls: type[StrategyParams] | None, base_params: Mapping[str, Any] | None
) -> int:
    if params_cls is None:
        return grid_size(dims)
    return sum(1 for point in _combinations(dims) if _is_valid(params_cls, {**(base_params or {}), **point}))


def _too_many(count: int, limit: int) -> ResearchInputError:
    return ResearchInputError(
        f"The grid has {count:,} parameter combinations, more than the limit of {limit:,}: "
        "narrow the ranges, take a larger step, or use TPE.",
        field="space",
    )
