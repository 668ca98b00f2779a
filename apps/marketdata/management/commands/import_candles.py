"""Import candle files into the store.

    python manage.py import_candles FILE [FILE ...] --venue binance [--symbol BTC/USDT]
        [--timeframe 5m] [--asset-class crypto]

Formats: CSV or CSV.gz with the header timestamp,open,high,low,close,volume; Binance public-data
kline CSV or ZIP; freqtrade JSON (see `apps.marketdata.importers`). Without --symbol or
--timeframe they are read from each file's name (BTC-USDT_5m.csv.gz: BTC/USDT, 5m). Each file
is validated whole before anything is written: a bad file is refused with its line number and
the reason, and nothing of it is stored. Re-importing a file writes nothing. Exit code 2 when
any file was refused.
"""

import re
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.common.errors import ApplicationError, ValidationFailed
from apps.marketdata import importers, services, timeframes
from apps.marketdata.management.commands._progress import progress_bar
from apps.marketdata.models import Instrument

VENUE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")


class Command(BaseCommand):
    help = "Import candles from CSV/CSV.gz, Binance kline CSV/ZIP or freqtrade JSON files."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE")
        parser.add_argument("--venue", required=True, help="Where the bars come from: a ccxt id, 'ib', 'demo', ...")
        parser.add_argument("--symbol", help="Unified symbol, e.g. BTC/USDT (default: from the file name).")
        parser.add_argument("--timeframe", help="e.g. 5m, 1h, 1d (default: from the file name).")
        parser.add_argument("--asset-class", default=Instrument.AssetClass.CRYPTO, choices=Instrument.AssetClass.values)

    def handle(self, *args: Any, **options: Any) -> None:
        files: list[str] = options["files"]
        venue = options["venue"].strip().lower()
        if not VENUE.match(venue):
            message = f"Invalid venue {options['venue']!r}: use a short lower-case id such as binance."
            raise CommandError(message, returncode=2)
        if options["timeframe"]:
            try:
                timeframes.seconds(options["timeframe"])
            except timeframes.UnknownTimeframe as exc:
                raise CommandError(str(exc), returncode=2) from exc
        refused = 0
        for name in files:
            try:
                self._import(Path(name), {**options, "venue": venue})
            except ApplicationError as exc:
                refused += 1
                self.stderr.write(f"{name}: {exc.message}")
        if refused:
            raise CommandError(f"{refused} of {len(files)} file(s) refused; nothing of them was stored.", returncode=2)

    def _import(self, path: Path, options: dict[str, Any]) -> None:
        venue = options["venue"]
        guessed_symbol, guessed_tf = importers.series_from_name(path.name)
        symbol = options["symbol"] or guessed_symbol
        timeframe = options["timeframe"] or guessed_tf
        if not symbol or not timeframe:
            missing = " and ".join(x for x, v in (("--symbol", symbol), ("--timeframe", timeframe)) if not v)
            raise ValidationFailed(f"cannot tell the series from the file name; pass {missing}")
        validated = services.candles_file_read(path=path, timeframe=timeframe)
        instrument = services.instrument_get_or_create(venue=venue, symbol=symbol, asset_class=options["asset_class"])
        with progress_bar(self.stderr, total=len(validated.frame), desc=path.name) as bar:
            result = services.candles_import_file(
                path=path,
                instrument=instrument,
                timeframe=timeframe,
                validated=validated,
                progress=lambda done, total: bar.update(done - bar.n),
            )
        span = f"{result.first:%Y-%m-%d %H:%M} .. {result.last:%Y-%m-%d %H:%M} UTC" if result.rows else "empty"
        self.stdout.write(
            f"{path.name}: {instrument} {timeframe} ({result.format}): {result.rows} rows, "
            f"{result.written} written, {span}"
        )
