"""Fixtures of the backtests platform tests (see platform_support.py): real candles imported
with the market-data services, recorded task sends and live events, Optuna's test storage."""

from tests.backtests.platform_support import btc, optuna_dir, pushed, sent

__all__ = ["btc", "optuna_dir", "pushed", "sent"]
