"""Who has a live connection open: so a bulk write (a copy fan-out to thousands of followers)
sends live events only to users who can receive them.

The websocket consumer counts each user's open connections: with Redis, in the hash
``ws:presence`` (field: user id, value: open connections) shared by every process; in embedded
mode, in this process (the only one). ``users_online(ids)`` answers for many users in one round
trip. A count left behind by a server that died only costs needless sends, never a missed one:
the counts are only ever used to skip users that are certainly offline. A connection that opens
after the check misses that batch's events, as it would have missed them had they been sent a
moment earlier; its page shows the rows on load.
"""

import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

from django.conf import settings

KEY = "ws:presence"
_local: Counter[int] = Counter()
_local_lock = threading.Lock()
_client: Any = None
_client_pid: int | None = None


def _redis() -> Any:
    """This process's Redis client, or None in embedded mode."""
    global _client, _client_pid
    url = getattr(settings, "REDIS_URL", "") or ""
    if not url or getattr(settings, "EMBEDDED", False):
        return None
    import os

    import redis

    if _client is None or _client_pid != os.getpid():
        _client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        _client_pid = os.getpid()
    return _client


def presence_change(user_id: int, delta: int) -> None:
    """A connection of ``user_id`` opened (+1) or closed (-1). Sync: call it off the event loop."""
    client = _redis()
    if client is None:
        with _local_lock:
            _local[user_id] += delta
            if _local[user_id] <= 0:
                del _local[user_id]
        return
    if client.hincrby(KEY, str(user_id), delta) <= 0:
        client.hdel(KEY, str(user_id))


def users_online(user_ids: Iterable[int]) -> set[int]:
    """Those of ``user_ids`` with at least one open connection (all of them if Redis fails:
    sending to someone offline is harmless, skipping someone online is not)."""
    ids = list(dict.fromkeys(int(u) for u in user_ids))
    if not ids:
        return set()
    client = _redis()
    if client is None:
        with _local_lock:
            return {u for u in ids if _local.get(u, 0) > 0}
    try:
        counts = client.hmget(KEY, [str(u) for u in ids])
    except Exception:
        return set(ids)
    return {u for u, count in zip(ids, counts, strict=True) if count is not None and int(count) > 0}
