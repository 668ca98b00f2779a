"""Importing 1,000,000 candles from CSV.gz, and reading them back (issue 3).

Run: `.venv/bin/python bench/import_candles.py` from the repository root (`--no-record` to skip
writing bench/RESULTS.md). Builds a 1,000,000-row CSV.gz from real one-minute candles
(BTC-USDT and ETH-USDT 1m from ../shared/data/ohlcv, chained, each copy rescaled to continue
from the previous close, on consecutive minutes), then in a fresh process per database:

- times `services.candles_import_file` (parse, validate, write) into PostgreSQL (DATABASE_URL,
  default postgres://postgres@127.0.0.1:5432/tp_bench, created and migrated if needed) and into
  SQLite (a new file);
- times reading the million candles back with `candles_frame` from PostgreSQL (best of 5).

Prints one JSON line {rows, seconds_pg, seconds_sqlite, read_seconds_pg} and appends a section
to bench/RESULTS.md. Targets: import <= 10 s, read <= 1.5 s.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OHLCV_DIR = ROOT.parent / "shared" / "data" / "ohlcv"
RESULTS = ROOT / "bench" / "RESULTS.md"
ROWS = 1_000_000
READS = 5
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/tp_bench"


def build_file(path: Path) -> None:
    import pandas as pd

    blocks = [
        pd.read_csv(OHLCV_DIR / f"{name}.csv.gz", usecols=["open", "high", "low", "close", "volume"])
        for name in ("BTC-USDT_1m", "ETH-USDT_1m")
    ]
    pieces = []
    rows = 0
    last_close = None
    while rows < ROWS:
        block = blocks[len(pieces) % 2].astype("float64")
        if last_close is not None:
            block[["open", "high", "low", "close"]] *= last_close / block["open"].iloc[0]
        pieces.append(block)
        rows += len(block)
        last_close = float(block["close"].iloc[-1])
    frame = pd.concat(pieces, ignore_index=True).iloc[:ROWS]
    # Rescaling can leave high a hair below open/close in the last bit: keep bars consistent.
    frame["high"] = frame[["open", "high", "close"]].max(axis=1)
    frame["low"] = frame[["open", "low", "close"]].min(axis=1)
    stamps = pd.date_range("2020-01-01", periods=ROWS, freq="min", tz="UTC")
    frame.insert(0, "timestamp", stamps.strftime("%Y-%m-%dT%H:%M:%SZ"))
    frame.to_csv(path, index=False, compression={"method": "gzip", "compresslevel": 6}, float_format="%.10g")


def ensure_pg_database(url: str) -> None:
    from urllib.parse import urlsplit, urlunsplit

    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres")).replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def run_child(db: str, csv_path: Path) -> None:
    """In a fresh process: migrate, import the file (timed), read it back (timed, PostgreSQL)."""
    import django

    os.environ["DJANGO_SETTINGS_MODULE"] = "tradingplatform.settings.dev"
    sys.path.insert(0, str(ROOT))
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from apps.marketdata import services
    from apps.marketdata.models import Candle, CandleSeries
    from apps.marketdata.storage import candles_frame

    call_command("migrate", verbosity=0)
    instrument = services.instrument_get_or_create(venue="bench", symbol="BTC/USDT")
    Candle.objects.filter(instrument=instrument).delete()
    CandleSeries.objects.filter(instrument=instrument).delete()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE marketdata_candle")

    started = time.perf_counter()
    result = services.candles_import_file(path=csv_path, instrument=instrument, timeframe="1m")
    seconds = time.perf_counter() - started
    assert result.written == ROWS, result
    out: dict[str, float | int] = {"seconds": round(seconds, 3)}

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE marketdata_candle")
        reads = []
        for _ in range(READS):
            started = time.perf_counter()
            frame = candles_frame(instrument, "1m")
            reads.append(time.perf_counter() - started)
            assert len(frame) == ROWS
        out["read_seconds"] = round(min(reads), 3)
        # Re-importing the same file writes nothing (and shows the upsert path's cost).
        started = time.perf_counter()
        again = services.candles_import_file(path=csv_path, instrument=instrument, timeframe="1m")
        out["reimport_seconds"] = round(time.perf_counter() - started, 3)
        assert again.written == 0
    print(json.dumps(out))


def child(db: str, csv_path: Path, tmp: Path) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if db == "pg":
        url = os.environ.get("DATABASE_URL") or DEFAULT_PG
        ensure_pg_database(url)
        env["DATABASE_URL"] = url
    else:
        env["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    done = subprocess.run(
        [sys.executable, __file__, "--child", db, "--csv", str(csv_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def record(result: dict[str, float | int], build_seconds: float) -> None:
    now = datetime.now(UTC)
    machine = f"{os.cpu_count()} CPUs (nproc {os.cpu_count()}), {cpu_model()}; Python {platform.python_version()}"
    section = f"""
## Market data storage (issue 3)

{now:%Y-%m-%d %H:%M} UTC; {machine}.
`python bench/import_candles.py`: a 1,000,000-row CSV.gz of real 1m candles (BTC/ETH-USDT chained,
{build_seconds:.1f} s to build, not timed), imported with `services.candles_import_file` (parse,
validate, write, series summary) into an empty series; then read back whole with `candles_frame`
(best of {READS}).

| measure | seconds | target |
|---|---:|---:|
| import 1,000,000 candles, PostgreSQL (COPY binary) | {result["seconds_pg"]:.2f} | <= 10 |
| import 1,000,000 candles, SQLite (embedded mode) | {result["seconds_sqlite"]:.2f} | - |
| read 1,000,000 candles, PostgreSQL | {result["read_seconds_pg"]:.3f} | <= 1.5 |
| re-import the same file, PostgreSQL (upsert, 0 written) | {result["reimport_seconds_pg"]:.2f} | - |
"""
    with RESULTS.open("a") as out:
        out.write(section)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=["pg", "sqlite"])
    parser.add_argument("--csv")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if args.child:
        run_child(args.child, Path(args.csv))
        return
    with tempfile.TemporaryDirectory(prefix="bench-candles-") as folder:
        tmp = Path(folder)
        csv_path = tmp / "BTC-USDT_1m.csv.gz"
        started = time.perf_counter()
        build_file(csv_path)
        build_seconds = time.perf_counter() - started
        pg = child("pg", csv_path, tmp)
        sqlite = child("sqlite", csv_path, tmp)
    result: dict[str, float | int] = {
        "rows": ROWS,
        "seconds_pg": pg["seconds"],
        "seconds_sqlite": sqlite["seconds"],
        "read_seconds_pg": pg["read_seconds"],
        "reimport_seconds_pg": pg["reimport_seconds"],
    }
    print(json.dumps(result))
    if not args.no_record:
        record(result, build_seconds)


if __name__ == "__main__":
    main()
