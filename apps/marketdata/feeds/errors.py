"""Errors of the market-data feeds. Importing this module does not import ccxt.

Temporary errors (unreachable, rate-limited) are worth retrying later; permanent ones (unknown
exchange, symbol or timeframe) are not. Each has a message an operator can act on.
"""

from apps.common.errors import ApplicationError


class FeedError(ApplicationError):
    default_code = "feed_error"
    temporary = False


class TemporaryFeedError(FeedError):
    """Retry later: the venue is unreachable, failing or rate-limiting us."""

    temporary = True


class PermanentFeedError(FeedError):
    """Retrying will not help: the request itself is wrong for this venue."""


class UnknownExchange(PermanentFeedError):
    default_code = "unknown_exchange"


class UnknownSymbol(PermanentFeedError):
    default_code = "unknown_symbol"


class TimeframeNotOffered(PermanentFeedError):
    default_code = "timeframe_not_offered"


class ExchangeUnreachable(TemporaryFeedError):
    default_code = "exchange_unreachable"


class RateLimited(TemporaryFeedError):
    default_code = "rate_limited"


class ExchangeFailed(PermanentFeedError):
    """The venue refused the request for another reason (its message is included)."""

    default_code = "exchange_error"
