"""TradingView webhooks: a deployment takes signals from TradingView alerts (or any sender).

The owner enables a deployment's webhook and gets a URL (``/hooks/tradingview/<token>/``) and a
secret, shown once; ``rotate`` replaces the secret and the old one stops working at once.

A signal is a JSON body::

    {"secret": "...", "action": "buy" | "sell" | "close", "symbol": "BTCUSDT",
     "size": 0.01, "price": 42000, "timestamp": "{{timenow}}", "nonce": "{{ticker}}-{{timenow}}"}

- Authentication: TradingView sends a body and nothing else (no headers of our choosing), so the
  secret may travel in the body (compared in constant time); other senders may instead sign the
  raw body: ``X-Signature: <hex HMAC-SHA256 of the body keyed with the secret>`` (a ``sha256=``
  prefix is accepted). The secret is kept encrypted (it is the HMAC key), never logged, never
  stored with the attempt, never echoed.
- Replays: ``timestamp`` (unix seconds, or ISO 8601 as TradingView's ``{{timenow}}``) must be
  within WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS (300) of the server's clock, and ``nonce`` must be
  new for the deployment: UNIQUE(deployment, nonce) among accepted signals is the guard, so two
  copies of one alert arriving at once place one order.
- Rate: at most the webhook's ``rate_limit_per_minute`` requests a minute (a sliding window in
  the cache: Redis in production, the process's memory in embedded mode).
- The deployment must be running (paper or live) and ``symbol`` one of its instruments
  (``BINANCE:BTCUSDT``, ``BTCUSDT``, ``BTC/USDT`` and ``btc-usdt`` all name BTC/USDT).

An accepted signal acts as a strategy signal would (`orders.webhook_orders_place`): the engine's
decision rule (``buy`` enters long, or reverses a short; ``sell`` exits a long and enters short
when the deployment allows shorts; ``close`` flattens; no pyramiding), orders through
``order_submit`` (risk checks, idempotent on the client order id ``tpw<deployment>.<nonce hash>``),
sized by the deployment's sizing unless ``size`` is given, with the deployment's stop loss /
take profit as the entry's bracket; ``price`` makes the entry a limit order. Fills on a paper
account come at the next bar, and a fill fans out to copiers as any fill does.

Every request naming a known token is recorded as a WebhookSignal (accepted or refused, with the
code, the HTTP status and the payload without the secret) and pushed live to the owner's
deployment page (``webhook.signal``). Refusals: 401 bad or missing secret / signature, 403
webhook disabled, 404 unknown token (nobody to show it to: logged only), 409 replayed nonce or
deployment not running, 413 body too large, 422 malformed body, invalid fields, old timestamp,
unknown symbol, 429 rate limited (one row a minute per webhook while limited: a flood must not
fill the table).
"""
