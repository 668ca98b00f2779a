"""Errors of the research package (optimisation, walk-forward, Monte Carlo). Pure: the
ApplicationError family in apps.common.errors imports nothing from Django, and the API turns these
into a 400 whose ``fields`` names what to fix (``space.fast.low``, ``windows_count``)."""

from typing import Any

from apps.common.errors import ValidationFailed


class ResearchInputError(ValidationFailed):
    """A research request that cannot run as asked: a search space outside the Params bounds, a
    grid above its limit, too few candles for the windows, an unknown objective or method.

    ``field`` names the offending input, so forms and the API can point at it.
    """

    default_code = "invalid_research"

    def __init__(self, message: str, *, field: str, extra: dict[str, Any] | None = None):
        super().__init__(message, extra={"fields": {field: [message]}, **(extra or {})})
        self.field = field
