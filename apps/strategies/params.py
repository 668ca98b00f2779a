"""Typed strategy parameters with bounds.

A strategy's ``Params`` is a frozen dataclass whose fields are declared with :func:`param`::

    @dataclass(frozen=True)
    class SmaCrossParams(StrategyParams):
        fast: int = param(10, low=2, high=200, help="Fast SMA period")
        slow: int = param(30, low=3, high=500, help="Slow SMA period")

        def check(self) -> None:
            if self.fast >= self.slow:
                raise InvalidParamsError("fast must be below slow", field="params.fast")

The bounds drive the portal's forms, the API schema (:func:`params_schema`) and the optimiser's
search space (:func:`search_space`). :func:`params_build` is the one way in from untrusted input:
it refuses unknown names, wrong types and values out of bounds with an error naming the field.
Types supported: int, float, bool, str (with ``choices``). Pure Python, no Django.
"""

import dataclasses
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apps.strategies.errors import InvalidParamsError

_META = "strategy_param"


@dataclass(frozen=True)
class ParamSpec:
    """What :func:`param` records about one field."""

    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] | None = None
    help: str = ""
    optimise: bool = True  # part of the default optimisation space


def param(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    step: float | None = None,
    choices: Sequence[Any] | None = None,
    help: str = "",
    optimise: bool = True,
) -> Any:
    """Declare a parameter field with its default and bounds (inclusive)."""
    spec = ParamSpec(
        low=low,
        high=high,
        step=step,
        choices=tuple(choices) if choices is not None else None,
        help=help,
        optimise=optimise,
    )
    return dataclasses.field(default=default, metadata={_META: spec})


@dataclass(frozen=True)
class StrategyParams:
    """Base of every Params dataclass. Override :meth:`check` for rules across fields."""

    def check(self) -> None:
        """Raise InvalidParamsError when fields are individually valid but inconsistent."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _spec(field: dataclasses.Field[Any]) -> ParamSpec:
    spec = field.metadata.get(_META)
    return spec if isinstance(spec, ParamSpec) else ParamSpec()


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(name: str, kind: Any, value: Any) -> Any:
    field = f"params.{name}"
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise InvalidParamsError(f"{name} must be true or false.", field=field)
    if kind is int:
        if isinstance(value, bool):
            raise InvalidParamsError(f"{name} must be a whole number.", field=field)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise InvalidParamsError(f"{name} must be a whole number, not {value!r}.", field=field)
    if kind is float:
        if isinstance(value, bool):
            raise InvalidParamsError(f"{name} must be a number.", field=field)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidParamsError(f"{name} must be a number, not {value!r}.", field=field) from None
        if not math.isfinite(number):
            raise InvalidParamsError(f"{name} must be a finite number.", field=field)
        return number
    if kind is str:
        if isinstance(value, str):
            return value
        raise InvalidParamsError(f"{name} must be text.", field=field)
    return value


def _check_bounds(name: str, spec: ParamSpec, value: Any) -> None:
    field = f"params.{name}"
    if spec.choices is not None and value not in spec.choices:
        allowed = ", ".join(str(choice) for choice in spec.choices)
        raise InvalidParamsError(f"{name} must be one of {allowed}.", field=field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if spec.low is not None and value < spec.low:
        raise InvalidParamsError(f"{name} must be at least {spec.low:g} (got {value:g}).", field=field)
    if spec.high is not None and value > spec.high:
        raise InvalidParamsError(f"{name} must be at most {spec.high:g} (got {value:g}).", field=field)


def params_build[P: "StrategyParams"](cls: type[P], values: Mapping[str, Any] | None = None) -> P:
    """Build and validate ``cls`` from untrusted ``values`` (defaults fill what is missing)."""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise InvalidParamsError("Parameters must be an object of name: value.", field="params")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        allowed = ", ".join(sorted(fields)) or "none"
        raise InvalidParamsError(
            f"Unknown parameter '{unknown[0]}' (this strategy takes: {allowed}).", field=f"params.{unknown[0]}"
        )
    types = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in values:
            continue
        value = _coerce(name, types.get(name), values[name])
        _check_bounds(name, _spec(field), value)
        kwargs[name] = value
    instance = cls(**kwargs)
    for name, field in fields.items():
        if name not in kwargs:
            _check_bounds(name, _spec(field), getattr(instance, name))
    instance.check()
    return instance


_JSON_TYPES: dict[Any, str] = {int: "integer", float: "number", bool: "boolean", str: "string"}


def params_schema(cls: type[StrategyParams]) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12 subset) of ``cls``: types, defaults, bounds, help."""
    types = _field_types(cls)
    properties: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        spec = _spec(field)
        prop: dict[str, Any] = {"type": _JSON_TYPES.get(types.get(field.name), "string"), "default": field.default}
        if spec.low is not None:
            prop["minimum"] = spec.low
        if spec.high is not None:
            prop["maximum"] = spec.high
        if spec.step is not None:
            prop["multipleOf"] = spec.step
        if spec.choices is not None:
            prop["enum"] = list(spec.choices)
        if spec.help:
            prop["description"] = spec.help
        properties[field.name] = prop
    return {"type": "object", "properties": properties, "additionalProperties": False}


@dataclass(frozen=True)
class Dimension:
    """One axis of an optimisation search space."""

    name: str
    kind: str  # "int" | "float" | "bool" | "choice"
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] | None = None


def search_space(cls: type[StrategyParams], *, only: Sequence[str] | None = None) -> list[Dimension]:
    """The optimisable dimensions of ``cls``: bounded numbers, booleans and choices.

    ``only`` restricts to the named fields (in that order); by default every field declared with
    ``optimise=True`` and usable bounds.
    """
    types = _field_types(cls)
    by_name = {field.name: field for field in dataclasses.fields(cls)}
    names = list(only) if only is not None else list(by_name)
    dims: list[Dimension] = []
    for name in names:
        if name not in by_name:
            raise InvalidParamsError(f"Unknown parameter '{name}'.", field=f"space.{name}")
        spec = _spec(by_name[name])
        if only is None and not spec.optimise:
            continue
        kind = types.get(name)
        if spec.choices is not None:
            dims.append(Dimension(name, "choice", choices=spec.choices))
        elif kind is bool:
            dims.append(Dimension(name, "bool", choices=(False, True)))
        elif kind in (int, float) and spec.low is not None and spec.high is not None:
            dims.append(Dimension(name, "int" if kind is int else "float", spec.low, spec.high, spec.step))
        elif only is not None:
            raise InvalidParamsError(f"Parameter '{name}' has no bounds to search.", field=f"space.{name}")
    return dims
