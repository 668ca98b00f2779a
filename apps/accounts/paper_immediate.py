"""Market orders the paper venue fills at once (time in force ``IOC``): copies of a leader's fill.

A strategy's market order rests until the next bar of its series closes and fills at that bar's
open, as the backtest engine's ``next_open`` fills do. An order that follows something that
has already happened (a copy of a leader's fill) cannot wait a bar: a real venue fills a market
order at once, so the paper venue fills an IOC market order at once too, at the newest close of
its series (the freshest price it knows), slipped by the account's slippage model against that
bar's volume and range, with the taker fee, the reduce-only cap and the funds check at the fill:
the matcher's own rules (``paper_matching.Matcher.execute``), written in bulk as a closed bar's
outcome is. What cannot fill (no funds, nothing to reduce) is EXPIRED with the reason; an IOC
order never rests.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.utils import timezone

from apps.accounts.models import PaperBalance, PaperOrder, TradingAccount
from apps.accounts.paper_matching import Matcher, _bar, _book, _write, base_quote, instrument_floats
from apps.marketdata.models import Candle, Instrument

IOC = "IOC"


def last_bar(*, instrument: Instrument, timeframe: str) -> dict[str, Any] | None:
    """The newest stored bar of the series (ts, open, high, low, close, volume), or None."""
    row = (
        Candle.objects.filter(instrument=instrument, timeframe=timeframe)
        .order_by("-ts")
        .values("ts", "open", "high", "low", "close", "volume")
        .first()
    )
    return dict(row) if row is not None else None


def paper_fill_now(
    *,
    accounts: Sequence[TradingAccount],
    orders: Sequence[PaperOrder],
    instrument: Instrument,
    timeframe: str,
    bar: Mapping[str, Any],
    now: datetime | None = None,
) -> Matcher:
    """Fill ``orders`` (saved IOC market PaperOrders of ``instrument`` on ``timeframe``, of
    ``accounts``) against the close of ``bar`` (the series' newest bar), and write the outcome
    in bulk: fills, the orders' new states, balances. Call inside a transaction holding the
    accounts' row locks (taken in pk order). Returns the matcher: ``fills`` holds
    (order, Fill) for what filled; the others are EXPIRED with their reason."""
    base, quote = base_quote(instrument)
    tick, lot, min_notional = instrument_floats(instrument)
    account_ids = sorted({int(account.pk) for account in accounts})
    balances: dict[int, dict[str, PaperBalance]] = {pk: {} for pk in account_ids}
    for row in PaperBalance.objects.filter(account_id__in=account_ids, asset__in=[base, quote]):
        balances[row.account_id][row.asset] = row
    now = now or timezone.now()
    # The bar's prices with the fill's own time: the fills are stamped now, not at the bar's open.
    matcher = Matcher(
        instrument,
        timeframe,
        _bar(now, {k: float(bar[k]) for k in ("open", "high", "low", "close", "volume")}),
        now,
        tick,
        lot,
        min_notional,
    )
    by_account: dict[int, list[PaperOrder]] = {}
    for order in orders:
        by_account.setdefault(order.account_id, []).append(order)
    books = []
    seen: dict[str, Any] = {}
    for account in sorted(accounts, key=lambda a: int(a.pk)):
        own = by_account.get(int(account.pk))
        if not own:
            continue
        book = _book(account, base, quote, balances[int(account.pk)], seen)
        matcher.orders = own
        for order in own:
            matcher.execute(book, order, matcher.bar.close, is_maker=False, at_open=False)
            if order.status == PaperOrder.Status.OPEN:  # never rests
                matcher.close(book, order, PaperOrder.Status.EXPIRED, "could not be filled at once")
        books.append(book)
    _write(matcher, books)
    return matcher
