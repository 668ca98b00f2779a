"""Where candles come from besides files: an exchange's public OHLCV endpoint through ccxt
(`ccxt_feed`, the only module that imports ccxt for market data) and a replay of stored
history (`replay`). Errors they raise are in `errors` (importable without ccxt)."""
