"""The external channels: one module per integration, each with ``send(target, message)``.

Every sender raises ``TemporaryDeliveryError`` for what may succeed later (a timeout, a refused
connection, HTTP 429 or 5xx: the delivery is retried with backoff) and
``PermanentDeliveryError`` for what will not (HTTP 4xx, a chat that blocked the bot, a URL we
refuse to call). They import no model: the delivery service hands them plain values.
"""

from dataclasses import dataclass, field
from typing import Any


class DeliveryError(Exception):
    pass


class TemporaryDeliveryError(DeliveryError):
    pass


class PermanentDeliveryError(DeliveryError):
    pass


@dataclass(frozen=True)
class Message:
    """What a channel sends: one event, or a batch of the same event type (``count`` > 1)."""

    event: str
    title: str
    body: str
    count: int = 1
    items: list[dict[str, Any]] = field(default_factory=list)

    def text(self) -> str:
        return f"{self.title}\n\n{self.body}".strip()
