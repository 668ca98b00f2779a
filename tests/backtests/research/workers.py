"""What a worker process runs in the shared-study test: pure imports only (no Django, no test
fixtures), so a freshly spawned interpreter can import it."""

from pathlib import Path

import pandas as pd

from apps.backtests.research.optimise import trials_run

OHLCV_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ohlcv"
SPACE = {"fast": {"low": 5, "high": 40}, "slow": {"low": 45, "high": 200}}


def candles() -> pd.DataFrame:
    frame = pd.read_csv(OHLCV_DIR / "BTC-USDT_1h.csv.gz")
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("timestamp"), utc=True), name="timestamp")
    return frame.astype("float64")


def run_chunk(storage_url: str, study_name: str, n_trials: int, chunk: int) -> list[int]:
    """One Celery task's worth: ``n_trials`` trials of the shared study; their numbers."""
    results = trials_run(
        storage_url=storage_url,
        study_name=study_name,
        strategy_key="sma_cross",
        candles=candles(),
        settings={"costs": {"fee": 0.001}},
        objective="sharpe",
        min_trades=3,
        space=SPACE,
        n_trials=n_trials,
        chunk=chunk,
    )
    return [result.number for result in results]
