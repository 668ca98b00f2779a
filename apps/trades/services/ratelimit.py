"""Order submissions per second per trading account, shared by every worker through the cache.

A slot scheduler, not a counter: time is cut into slots of ``1.1 / ORDER_RATE_PER_SECOND``
seconds (10 % narrower than the limit, so a send that starts a few milliseconds after its slot
opens still keeps any one-second window at or under the limit) and each send takes one slot
with ``cache.add`` (atomic "add if absent" in both Redis and the local-memory cache). A send
whose first free slot is more than ``ORDER_RATE_MAX_WAIT_SECONDS`` away gives its slot back
and is deferred (the caller re-queues it with that countdown); nothing is dropped.

Embedded mode uses the local-memory cache: one process, so the same guarantee holds.
"""

import time

from django.conf import settings
from django.core.cache import cache

_HORIZON_SLOTS = 600
_BATCH = 50
_MARGIN = 1.1


def _interval() -> float:
    rate = float(getattr(settings, "ORDER_RATE_PER_SECOND", 10.0))
    return _MARGIN / rate if rate > 0 else 0.0


def rate_reserve(*, account_id: int, now: float | None = None) -> tuple[bool, float]:
    """Take the account's next free send slot: ``(True, wait)`` = the slot is ours, send after
    sleeping ``wait`` seconds (at most ``ORDER_RATE_MAX_WAIT_SECONDS``); ``(False, delay)`` = no
    slot close enough, defer the send by ``delay`` seconds."""
    interval = _interval()
    if interval <= 0:
        return True, 0.0
    now = time.time() if now is None else now
    first = int(now / interval)
    ttl = int(_HORIZON_SLOTS * interval) + 5
    for start in range(first, first + _HORIZON_SLOTS, _BATCH):
        keys = [f"tp:orate:{account_id}:{slot}" for slot in range(start, start + _BATCH)]
        taken = cache.get_many(keys)
        for offset, key in enumerate(keys):
            if key in taken:
                continue
            if cache.add(key, 1, timeout=ttl):
                wait = max(0.0, (start + offset) * interval - now)
                if wait > float(getattr(settings, "ORDER_RATE_MAX_WAIT_SECONDS", 0.5)):
                    cache.delete(key)
                    return False, wait
                return True, wait
    return False, _HORIZON_SLOTS * interval
