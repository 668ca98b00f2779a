"""Errors of the strategy framework. Pure (no Django): the ApplicationError family lives in
apps.common.errors, which imports nothing from Django either, so the API turns these into a 400
that names the field."""

from typing import Any

from apps.common.errors import NotFound, ValidationFailed


class InvalidParamsError(ValidationFailed):
    """A parameter is missing its type, outside its bounds, or inconsistent with another one.

    `field` names the parameter (``params.fast``), so forms and the API can point at it.
    """

    default_code = "invalid_params"

    def __init__(self, message: str, *, field: str, extra: dict[str, Any] | None = None):
        super().__init__(message, extra={"fields": {field: [message]}, **(extra or {})})
        self.field = field


class UnknownStrategyError(NotFound):
    default_code = "unknown_strategy"

    def __init__(self, key: str):
        super().__init__(
            f"There is no strategy '{key}'.", extra={"fields": {"strategy": [f"Unknown strategy '{key}'."]}}
        )
        self.key = key
        # A wrong key in a request body is bad input (400), not a missing URL.
        self.status_code = 400


class StrategyComputeError(ValidationFailed):
    """The strategy's code raised, or returned a frame that breaks the contract."""

    default_code = "strategy_failed"
