"""Backtest a strategy from the command line, on a candle file or on stored candles.

    python manage.py backtest --strategy sma_cross --params '{"fast": 10, "slow": 30}' \\
        --csv FILE [--timeframe 1m] --fee 0.001 --cash 10000 --fill next_open --json
    python manage.py backtest --strategy sma_cross --instrument ID --timeframe 1h \\
        --start 2024-01-01 --end 2024-06-01
    python manage.py backtest --rules RULES.json --csv FILE --engine-settings '{"exits": {"stop_loss": 0.02}}'

The candle file is the platform's CSV (``timestamp,open,high,low,close,volume``, .csv or
.csv.gz; also Binance kline and freqtrade JSON files), read and validated by
:mod:`apps.marketdata.importers`; its timeframe comes from --timeframe or the file's name.
--engine-settings takes the full EngineSettings dict (the option cannot be called --settings:
Django's manage.py reads that one as the settings module before any command runs); --cash,
--fee and --fill override it. Prints one
JSON object (every metric, plus ``lookahead_biased`` from the look-ahead check and the run's
strategy, bars and range) with --json, else a table. With --instrument, the instrument's lot
size, minimum notional and tick size apply unless the settings give their own. Bad input prints
one line to stderr and exits with code 2.
"""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.backtests.engine import BacktestResult, resolve_settings, run_backtest
from apps.backtests.engine.settings import FILLS
from apps.common.errors import ApplicationError
from apps.marketdata import importers, selectors, services, storage, timeframes
from apps.strategies.base import Strategy
from apps.strategies.lookahead import lookahead_check
from apps.strategies.registry import get_strategy
from apps.strategies.rules import compile_rules

PERCENT = {
    "total_return",
    "cagr",
    "volatility",
    "max_drawdown",
    "win_rate",
    "exposure",
    "ulcer_index",
    "buy_and_hold_return",
}


def _refuse(message: str) -> CommandError:
    return CommandError(" ".join(str(message).split()), returncode=2)


def _describe(exc: ApplicationError) -> str:
    fields = exc.extra.get("fields") or {}
    first = next(iter(fields), None)
    if first and not exc.message.startswith(first):
        return f"{first}: {exc.message}"
    return exc.message


def _json_arg(raw: str, name: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _refuse(f"{name} is not valid JSON: {exc.msg} (column {exc.colno}).") from exc


def _when(raw: str | None, name: str) -> datetime | None:
    if raw is None:
        return None
    try:
        stamp = pd.Timestamp(raw)
    except ValueError as exc:
        raise _refuse(f"{name} {raw!r} is not a date (use 2024-01-01 or 2024-01-01T12:00).") from exc
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.to_pydatetime()


class Command(BaseCommand):
    help = "Backtest a strategy (or a rule set) on a candle file or stored candles and print its metrics."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--strategy", help="Registry key, e.g. sma_cross.")
        parser.add_argument("--params", default="{}", help="Strategy parameters as JSON, e.g. '{\"fast\": 10}'.")
        parser.add_argument("--rules", metavar="FILE", help="A rule set (JSON file) instead of --strategy.")
        parser.add_argument(
            "--csv", metavar="FILE", help="Candle file: CSV or CSV.gz (timestamp,open,high,low,close,volume)."
        )
        parser.add_argument("--instrument", type=int, metavar="ID", help="Stored instrument id (instead of --csv).")
        parser.add_argument("--timeframe", help="Bar size, e.g. 1h (default for --csv: from the file name).")
        parser.add_argument("--start", help="First bar's open time (UTC), e.g. 2024-01-01.")
        parser.add_argument("--end", help="End of the range (UTC, exclusive).")
        parser.add_argument(
            "--engine-settings",
            metavar="JSON",
            help="EngineSettings as JSON (costs, sizing, exits, ...). Not --settings: Django owns that name.",
        )
        parser.add_argument("--cash", type=float, help="Starting cash (default 10000).")
        parser.add_argument("--fee", type=float, help="Taker fee as a fraction (default 0.001 = 0.1 %%).")
        parser.add_argument("--fill", choices=FILLS, help="next_open (default) or close.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object instead of a table.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            strategy = self._strategy(options)
            candles, timeframe, rules = self._candles(options)
            given = options["engine_settings"]
            raw_settings = _json_arg(given, "--engine-settings") if given else {}
            if not isinstance(raw_settings, dict):
                raise _refuse("--engine-settings must be a JSON object.")
            extra: dict[str, Any] = {} if raw_settings.get("timeframe") or not timeframe else {"timeframe": timeframe}
            given_rules = raw_settings.get("instrument")
            if not isinstance(given_rules, dict):
                given_rules = {}
            if rules:
                extra["instrument"] = {**rules, **given_rules}
            settings = resolve_settings(
                raw_settings, cash=options["cash"], fee=options["fee"], fill=options["fill"], **extra
            )
            result = run_backtest(strategy, candles, settings=settings)
            biased = lookahead_check(strategy, candles).is_biased
        except ApplicationError as exc:
            raise _refuse(_describe(exc)) from exc
        report = {
            **result.metrics,
            "lookahead_biased": biased,
            "strategy": strategy.describe(),
            "bars": len(candles),
            "start": candles.index[0].isoformat(),
            "end": candles.index[-1].isoformat(),
            "duration_ms": round(result.duration_ms, 3),
        }
        if options["json"]:
            self.stdout.write(json.dumps(report, allow_nan=False))
        else:
            self._table(report, result)

    def _strategy(self, options: dict[str, Any]) -> Strategy:
        key, rules_file = options["strategy"], options["rules"]
        if rules_file:
            if key and key != "rules":
                raise _refuse("Give either --strategy or --rules, not both.")
            try:
                spec = json.loads(Path(rules_file).read_text())
            except OSError as exc:
                raise _refuse(f"Cannot read the rules file {rules_file}: {exc.strerror}.") from exc
            except json.JSONDecodeError as exc:
                raise _refuse(f"{rules_file} is not valid JSON: {exc.msg} (line {exc.lineno}).") from exc
            return compile_rules(spec)
        if not key:
            raise _refuse("Give --strategy KEY (e.g. sma_cross) or --rules FILE.")
        params = _json_arg(options["params"], "--params")
        if not isinstance(params, dict):
            raise _refuse("--params must be a JSON object, e.g. '{\"fast\": 10}'.")
        return get_strategy(key, params)

    def _candles(self, options: dict[str, Any]) -> tuple[pd.DataFrame, str | None, dict[str, float]]:
        """The candles, their timeframe, and the stored instrument's trading rules (if any)."""
        csv, instrument_id = options["csv"], options["instrument"]
        if bool(csv) == (instrument_id is not None):
            raise _refuse("Give exactly one of --csv FILE or --instrument ID.")
        timeframe: str | None = options["timeframe"]
        if timeframe is not None and timeframe not in timeframes.TIMEFRAMES:
            raise _refuse(f"Unknown timeframe {timeframe!r}; use one of {', '.join(timeframes.TIMEFRAMES)}.")
        start, end = _when(options["start"], "--start"), _when(options["end"], "--end")
        rules: dict[str, float] = {}
        if csv:
            path = Path(csv)
            if not path.is_file():
                raise _refuse(f"No such candle file: {csv}.")
            timeframe = timeframe or importers.series_from_name(path.name)[1]
            if timeframe is None:
                raise _refuse(f"Cannot tell the timeframe from the name {path.name}; pass --timeframe.")
            frame = services.candles_file_read(path=path, timeframe=timeframe).frame
            frame = frame.loc[(frame.index >= start) if start else slice(None)]
            frame = frame.loc[(frame.index < end) if end else slice(None)]
            where = path.name
        else:
            instrument = selectors.instrument_get(instrument_id=int(instrument_id))
            if instrument is None:
                raise _refuse(f"There is no instrument {instrument_id}.")
            if timeframe is None:
                raise _refuse("--instrument needs --timeframe (e.g. 1h).")
            frame = storage.candles_frame(instrument, timeframe, start, end)
            where = f"{instrument} {timeframe}"
            for name in ("lot_size", "min_notional", "tick_size"):
                value = getattr(instrument, name)
                if value is not None and value > 0:
                    rules[name] = float(value)
        if frame.empty:
            raise _refuse(f"No candles in {where} for that range.")
        return frame[["open", "high", "low", "close", "volume"]].astype("float64"), timeframe, rules

    def _table(self, report: dict[str, Any], result: BacktestResult) -> None:
        head = f"{report['strategy']}: {report['bars']} bars, {report['start']} .. {report['end']}"
        self.stdout.write(head)
        if report["lookahead_biased"]:
            self.stdout.write("WARNING: the look-ahead check flags this strategy: its past signals change.")
        width = max(len(key) for key in result.metrics)
        for key, value in result.metrics.items():
            if value is None:
                shown = "-"
            elif key in PERCENT:
                shown = f"{value * 100:.2f} %"
            elif isinstance(value, int):
                shown = str(value)
            else:
                shown = f"{value:,.4f}"
            self.stdout.write(f"  {key.ljust(width)}  {shown}")
        self.stdout.write(f"  {'lookahead_biased'.ljust(width)}  {'yes' if report['lookahead_biased'] else 'no'}")
