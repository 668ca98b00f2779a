"""Requests per minute per webhook, shared by every web process through the cache.

A sliding window over two fixed one-minute counters (the current minute's count plus the last
minute's, weighted by how much of it still overlaps): ``cache.add`` and ``cache.incr`` are
atomic in Redis and in the local-memory cache (embedded mode: one process), so concurrent
requests are each counted once. A refused request counts too: a sender that keeps flooding
stays limited.
"""

import time

from django.core.cache import cache

WINDOW_SECONDS = 60


def _key(webhook_id: int, minute: int) -> str:
    return f"tp:whrate:{webhook_id}:{minute}"


def rate_allow(*, webhook_id: int, per_minute: int, now: float | None = None) -> bool:
    """Count one request; False when it goes over ``per_minute`` in the sliding minute."""
    now = time.time() if now is None else now
    minute = int(now // WINDOW_SECONDS)
    key = _key(webhook_id, minute)
    cache.add(key, 0, timeout=WINDOW_SECONDS * 2 + 10)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=WINDOW_SECONDS * 2 + 10)
        count = 1
    previous = int(cache.get(_key(webhook_id, minute - 1)) or 0)
    overlap = 1.0 - (now % WINDOW_SECONDS) / WINDOW_SECONDS
    return previous * overlap + count <= per_minute


def first_refusal_this_minute(*, webhook_id: int, now: float | None = None) -> bool:
    """True once a minute per webhook: only that refusal is recorded while a sender floods."""
    now = time.time() if now is None else now
    return bool(
        cache.add(f"tp:whrate-logged:{webhook_id}:{int(now // WINDOW_SECONDS)}", 1, timeout=WINDOW_SECONDS + 10)
    )


def rate_forget(*, webhook_id: int, now: float | None = None) -> None:
    """Drop the webhook's counters (a new webhook starts with a full minute)."""
    now = time.time() if now is None else now
    minute = int(now // WINDOW_SECONDS)
    cache.delete_many(
        [_key(webhook_id, minute), _key(webhook_id, minute - 1), f"tp:whrate-logged:{webhook_id}:{minute}"]
    )
