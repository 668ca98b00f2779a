"""The pipeline's refusals, as the rest of the platform expects them (ValidationFailed with the
field they are about), so a form, the API and a failed training all show the same message."""

from apps.common.errors import ValidationFailed


class MLInputError(ValidationFailed):
    """A configuration or data the pipeline cannot train or predict with. ``field`` names the
    input (``features``, ``label.horizon``, ``model_params.max_iter``, ``history``, ...)."""

    default_code = "ml_invalid"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message, extra={"fields": {field: [message]}})
        self.field = field


class ModelLoadError(ValidationFailed):
    """A stored model that cannot be used: its bytes do not match their hash, it does not
    unpickle (a library changed), or it is not a model bundle of a format this code reads."""

    default_code = "model_load_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message, extra={"fields": {"artifact": [message]}})


def ml_error(message: str, field: str) -> MLInputError:
    """An MLInputError about ``field`` (``extra["fields"][field] == [message]``)."""
    return MLInputError(message, field=field)
