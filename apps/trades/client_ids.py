"""Deterministic client order ids: the same identity always gives the same id.

The id is the key that makes a send idempotent: the Order row is unique on (account, id), and
after an ambiguous send the venue is asked about this id instead of sending again. Ids match
``^[A-Za-z0-9_.:/-]{1,32}$`` (what Binance, and most venues, accept) and carry the prefix
``tp`` so reconciliation can tell our orders from the ones a user placed by hand.

Layout (base-36 numbers, so a 20-year run of 1-second bars still fits):
- strategy order:  ``tp<deployment>.<bar unix seconds>.<instrument>.<leg>``
- manual order:    ``tpm<12 random hex>`` (random: a manual order is one click, not a replayable event;
  the API takes an Idempotency-Key header to make a retried POST safe)
- copy order:      ``tpc<leader fill>.<subscription>``
- copy on joining: ``tpj<subscription>.<instrument>`` (opening the leader's current position)
- algo child:      ``<parent id>/<n>`` when it fits, else ``tpa<hash of parent id and n>``
- webhook order:   ``tpw<deployment>.<16 hex of the nonce's hash>.<leg>`` (a TradingView alert: the
  same (deployment, nonce) always gives the same id)
"""

import hashlib
import re
import secrets
from datetime import datetime

PREFIX = "tp"
PATTERN = re.compile(r"^[A-Za-z0-9_.:/-]{1,32}$")
MAX_LENGTH = 32
LEGS = ("entry", "exit", "stop", "target", "close", "reduce")
_LEG_CODES = {"entry": "e", "exit": "x", "stop": "s", "target": "t", "close": "c", "reduce": "r"}
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(value: int) -> str:
    if value < 0:
        raise ValueError("client order id parts are never negative")
    out = ""
    while True:
        value, digit = divmod(value, 36)
        out = _DIGITS[digit] + out
        if not value:
            return out


def _fit(candidate: str, *identity: object) -> str:
    if len(candidate) <= MAX_LENGTH:
        return candidate
    digest = hashlib.blake2b("|".join(map(str, identity)).encode(), digest_size=14).hexdigest()
    return f"{PREFIX}h{digest}"[:MAX_LENGTH]


def strategy_order_id(*, deployment_id: int, bar_ts: datetime, instrument_id: int, leg: str, attempt: int = 0) -> str:
    """The id of a deployment's order for one bar, instrument and leg. ``attempt`` > 0 only for a
    deliberate re-entry after a terminal refusal (never for a retry of an unknown send)."""
    if leg not in _LEG_CODES:
        raise ValueError(f"unknown leg {leg!r}; one of {', '.join(LEGS)}")
    seconds = int(bar_ts.timestamp())
    code = _LEG_CODES[leg] + (base36(attempt) if attempt else "")
    candidate = f"{PREFIX}{base36(deployment_id)}.{base36(seconds)}.{base36(instrument_id)}.{code}"
    return _fit(candidate, "s", deployment_id, seconds, instrument_id, leg, attempt)


def manual_order_id() -> str:
    return f"{PREFIX}m{secrets.token_hex(6)}"


def copy_order_id(*, leader_fill_id: int, subscription_id: int) -> str:
    candidate = f"{PREFIX}c{base36(leader_fill_id)}.{base36(subscription_id)}"
    return _fit(candidate, "c", leader_fill_id, subscription_id)


def copy_join_order_id(*, subscription_id: int, instrument_id: int) -> str:
    candidate = f"{PREFIX}j{base36(subscription_id)}.{base36(instrument_id)}"
    return _fit(candidate, "j", subscription_id, instrument_id)


def child_order_id(*, parent_id: str, n: int) -> str:
    return _fit(f"{parent_id}/{base36(n)}", "a", parent_id, n)


def webhook_order_id(*, deployment_id: int, nonce: str, leg: str) -> str:
    """The id of an order placed by a deployment's webhook signal ``nonce`` (``leg`` entry or exit)."""
    if leg not in _LEG_CODES:
        raise ValueError(f"unknown leg {leg!r}; one of {', '.join(LEGS)}")
    digest = hashlib.blake2b(nonce.encode(), digest_size=8).hexdigest()
    candidate = f"{PREFIX}w{base36(deployment_id)}.{digest}.{_LEG_CODES[leg]}"
    return _fit(candidate, "w", deployment_id, nonce, leg)


def is_ours(client_order_id: str) -> bool:
    return client_order_id.startswith(PREFIX)
