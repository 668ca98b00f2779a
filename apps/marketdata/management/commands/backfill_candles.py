"""Fetch history from an exchange's public OHLCV endpoint (ccxt) into the store.

    python manage.py backfill_candles --venue binance --symbol BTC/USDT --timeframe 1h
        --since 2024-01-01 [--until 2024-06-01]

Pages through the venue at its rate limit, retrying temporary failures (429 with Retry-After,
5xx, timeouts) a bounded number of times. Every page is stored as it arrives, and a second run
fetches only what is missing, so an interrupted backfill resumes where it stopped. An unknown
exchange or symbol, a timeframe the venue does not offer, an unreachable or rate-limiting
venue: a message on stderr and exit code 2; nothing already stored is lost.
"""

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from apps.common.errors import ApplicationError
from apps.marketdata import services, timeframes
from apps.marketdata.management.commands._progress import progress_bar
from apps.marketdata.models import Instrument


def parse_when(raw: str) -> datetime:
    """ISO-8601 date or date-time; UTC unless it says otherwise."""
    text = raw.strip()
    parsed = parse_datetime(text)
    if parsed is None:
        day = parse_date(text)
        if day is None:
            message = f"Not a date or date-time: {raw!r} (use e.g. 2024-01-01 or 2024-01-01T12:00Z)."
            raise CommandError(message, returncode=2)
        parsed = datetime(day.year, day.month, day.day)
    return parsed.replace(tzinfo=UTC) if timezone.is_naive(parsed) else parsed.astimezone(UTC)


class Command(BaseCommand):
    help = "Backfill candles from a ccxt exchange's public OHLCV endpoint (resumable)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--venue", required=True, help="ccxt exchange id, e.g. binance")
        parser.add_argument("--symbol", required=True, help="Unified symbol, e.g. BTC/USDT")
        parser.add_argument("--timeframe", required=True, help="e.g. 1m, 5m, 1h, 1d")
        parser.add_argument("--since", required=True, type=str, help="First bar's open time (UTC), e.g. 2024-01-01")
        parser.add_argument("--until", type=str, help="Stop before this time (UTC); default: now")
        parser.add_argument("--asset-class", default=Instrument.AssetClass.CRYPTO, choices=Instrument.AssetClass.values)
        parser.add_argument("--retries", type=int, default=5, help="Retries of a failing request (default 5)")
        parser.add_argument("--backoff", type=float, default=1.0, help="First retry wait in seconds (doubles)")

    def handle(self, *args: Any, **options: Any) -> None:
        from apps.marketdata.feeds import ccxt_feed

        timeframe = options["timeframe"]
        since = parse_when(options["since"])
        until = parse_when(options["until"]) if options["until"] else None
        stored = 0
        try:
            timeframes.seconds(timeframe)
            exchange = ccxt_feed.exchange_get(options["venue"])
            ccxt_feed.check_timeframe(exchange, timeframe)
            fetch = {"retries": options["retries"], "backoff": options["backoff"]}
            instrument = services.instrument_from_exchange(
                venue=options["venue"],
                symbol=options["symbol"],
                asset_class=options["asset_class"],
                exchange=exchange,
                **fetch,
            )
            span = ((until or timezone.now()) - since).total_seconds()
            total = max(0, int(span // timeframes.seconds(timeframe)))
            with progress_bar(self.stderr, total=total, desc=f"{instrument} {timeframe}") as bar:

                def on_page(page: Any) -> None:
                    nonlocal stored
                    stored += len(page)
                    bar.update(len(page))

                result = services.candles_backfill(
                    instrument=instrument,
                    timeframe=timeframe,
                    since=since,
                    until=until,
                    exchange=exchange,
                    on_page=on_page,
                    **fetch,
                )
        except timeframes.UnknownTimeframe as exc:
            raise CommandError(str(exc), returncode=2) from exc
        except ApplicationError as exc:
            kept = f" {stored} bars fetched before the failure are stored; run again to resume." if stored else ""
            raise CommandError(f"{exc.message}{kept}", returncode=2) from exc
        if not result.fetched:
            self.stdout.write(f"{instrument} {timeframe}: nothing new to fetch.")
            return
        self.stdout.write(
            f"{instrument} {timeframe}: {result.fetched} bars fetched in {result.pages} page(s), "
            f"{result.written} written, {result.first:%Y-%m-%d %H:%M} .. {result.last:%Y-%m-%d %H:%M} UTC"
        )
