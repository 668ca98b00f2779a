"""JSON log lines for production (one object per line, for the log shipper).

Each line: ``time``, ``level``, ``logger``, ``message``; the ids of its context when known
(``request_id``, ``task_id``, ``task_name``, ``user_id``: apps.common.log_context's
ContextFilter puts them on the record), the record's ``extra`` fields (``event``,
``account_id``, ...), and ``exc`` for an exception. Secrets are removed before this runs
(apps.common.log_context.RedactSecretsFilter, on the same handler); the exception text is
redacted here once more.
"""

import json
import logging
from datetime import UTC, datetime
from typing import Any

from apps.common.log_context import current, extra_fields, redact_text

_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any) -> Any:
    """JSON-friendly ``extra`` values: scalars, and lists / dicts of them; anything else (a
    request object) by its short ``str``."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value[:50]]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in list(value.items())[:50]}
    return str(value)[:200]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in current().items():  # a handler without the ContextFilter still gets them
            payload.setdefault(key, value)
        for key, value in extra_fields(record).items():
            if key not in payload:
                payload[key] = _plain(value)
        if record.exc_info:
            payload["exc"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)
