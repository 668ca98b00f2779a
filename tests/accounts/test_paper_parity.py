"""The paper venue gives the backtest engine's trades on real candles (../shared/data/ohlcv).

The strategy's signals are fed through the venue bar by bar the way a deployment does: each bar
is stored and matched (as the candle feed and the tick fan-out do), then at its close the
orders of the signal are placed: a reduce-only market exit, and a market entry sized at the
fill (``sizing``) with its bracket attached (``attached``). The venue's fills, paired into
trades, must equal ``run_backtest``'s trades: times, prices and sizes to 1e-8 relative, fees.
(The deployment-level parity test, through ticks and the execution service, is
tests/strategies/test_paper_parity.py.)
"""

from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from apps.accounts.brokers.base import OrderRequest
from apps.accounts.models import PaperBalance, PaperFill
from apps.accounts.paper import PaperBroker, paper_bar_closed
from apps.backtests.engine import run_backtest
from apps.backtests.engine.fills import _decide
from apps.marketdata import services as market_services
from apps.marketdata.storage import candles_write
from apps.strategies.base import signals
from apps.strategies.registry import get_strategy
from tests.accounts.paper_support import make_account
from tests.marketdata.ohlcv import load_candles

BARS = 1000
REL = 1e-8


def _settings(short: bool, sizing: dict[str, Any], instrument: dict[str, Any]) -> dict[str, Any]:
    return {
        "cash": 10_000.0,
        "fill": "next_open",
        "allow_short": short,
        "timeframe": "1h",
        "costs": {"fee": 0.001, "slippage": "fixed_bps", "slippage_bps": 5.0},
        "sizing": sizing,
        "exits": {"stop_loss": 0.02, "take_profit": 0.04},
        "instrument": instrument,
    }


def _paper_trades(account: Any) -> list[dict[str, Any]]:
    """The venue's fills paired into round trips (entry, then the reduce-only fill closing it)."""
    fills = PaperFill.objects.filter(order__account=account).select_related("order").order_by("filled_at", "order_id")
    trades: list[dict[str, Any]] = []
    open_trade: dict[str, Any] | None = None
    for fill in fills:
        order = fill.order
        if open_trade is None:
            assert not order.reduce_only, f"{order.client_order_id} closed nothing"
            open_trade = {
                "side": "long" if order.side == "buy" else "short",
                "entry_at": fill.filled_at,
                "entry_price": float(fill.price),
                "size": float(fill.quantity),
                "fees": float(fill.fee),
            }
            continue
        assert order.reduce_only and fill.quantity == Decimal(str(open_trade["size"])).quantize(Decimal("1e-10"))
        reason = "signal" if order.parent_id is None else ("stop" if order.type == "stop" else "target")
        trades.append(
            {
                **open_trade,
                "exit_at": fill.filled_at,
                "exit_price": float(fill.price),
                "fees": open_trade["fees"] + float(fill.fee),
                "exit_reason": reason,
            }
        )
        open_trade = None
    if open_trade is not None:
        trades.append({**open_trade, "exit_reason": "end"})
    return trades


def _feed(broker: PaperBroker, account: Any, instrument: Any, candles: pd.DataFrame, frame: pd.DataFrame,
          settings: dict[str, Any]) -> None:  # fmt: skip
    """Bar by bar: store and match the bar, then place the orders of its signals at its close."""
    el, xl, es, xs = (frame[c].to_numpy() for c in ("enter_long", "exit_long", "enter_short", "exit_short"))
    sizing = {k: v for k, v in settings["sizing"].items() if k != "mode"}
    mode = settings["sizing"]["mode"]
    symbol = f"{instrument.symbol}@{instrument.venue}"
    stored = 0
    for i, (ts, row) in enumerate(candles.iterrows()):
        paper_bar_closed(instrument_id=instrument.pk, timeframe="1h", ts=ts.to_pydatetime(), bar=row.to_dict())
        if i == len(candles) - 1:
            break  # the engine fills no signal of the last bar
        if not (el[i] or xl[i] or es[i] or xs[i]):
            continue
        # The feed stores every bar before announcing it; here the store catches up when it matters
        # (an order's accepted bar is the newest stored one), which keeps the test fast.
        candles_write(instrument=instrument, timeframe="1h", frame=candles.iloc[stored : i + 1])
        stored = i + 1
        held = sum((b.free + b.locked for b in PaperBalance.objects.filter(account=account, asset="BTC")), Decimal(0))
        cash = sum((b.free + b.locked for b in PaperBalance.objects.filter(account=account, asset="USDT")), Decimal(0))
        pos = (held > 0) - (held < 0)
        do_exit, wanted = _decide(pos, el[i], xl[i], es[i], xs[i], settings["allow_short"])
        exit_id = f"x{i}"
        if do_exit and pos != 0:
            broker.submit(OrderRequest(
                client_order_id=exit_id, symbol=symbol, side="sell" if pos > 0 else "buy", type="market",
                quantity=abs(held), reduce_only=True, timeframe="1h",
            ))  # fmt: skip
        if wanted != 0 and (pos == 0 or do_exit):
            close = float(row["close"])
            order_sizing: dict[str, Any] = {
                "mode": mode,
                "equity": float(cash) + pos * float(abs(held)) * close,
                **sizing,
            }
            if pos != 0:
                order_sizing |= {"mark_price": close, "exit_client_order_id": exit_id}
            broker.submit(OrderRequest(
                client_order_id=f"e{i}", symbol=symbol, side="buy" if wanted > 0 else "sell", type="market",
                quantity=Decimal(0), timeframe="1h", sizing=order_sizing,
                attached={"stop_loss": 0.02, "take_profit": 0.04},
            ))  # fmt: skip


@pytest.mark.parametrize(
    ("short", "sizing", "rules"),
    [
        (False, {"mode": "fixed_fraction", "fraction": 0.5}, {}),
        (True, {"mode": "all_equity"}, {"tick_size": 0.01, "lot_size": 0.00001}),
        (True, {"mode": "risk_per_trade", "risk": 0.01}, {"tick_size": 0.01}),
    ],
    ids=["long-fraction", "reversals-all-equity-ticks-lots", "reversals-risk"],
)
def test_paper_fills_equal_the_backtests_trades(
    alice: Any, short: bool, sizing: dict[str, Any], rules: dict[str, float]
) -> None:
    candles = load_candles("BTC-USDT_1h").iloc[:BARS]
    strategy = get_strategy("sma_cross", fast=10, slow=30, short=short)
    settings = _settings(short, sizing, rules)
    expected = run_backtest(strategy, candles, settings=settings).trades
    frame = signals(get_strategy("sma_cross", fast=10, slow=30, short=short), candles)
    instrument = market_services.instrument_get_or_create(
        venue="paritytest",
        symbol="BTC/USDT",
        tick_size=Decimal(str(rules["tick_size"])) if "tick_size" in rules else None,
        lot_size=Decimal(str(rules["lot_size"])) if "lot_size" in rules else None,
    )
    account = make_account(alice, costs=settings["costs"], allow_short=short)
    sizing_inputs = {**sizing, "lot": rules.get("lot_size", 0.0), "tick": rules.get("tick_size", 0.0)}
    _feed(PaperBroker(int(account.pk)), account, instrument, candles, frame, {**settings, "sizing": sizing_inputs})

    paper = _paper_trades(account)
    reasons = set(expected["exit_reason"])
    assert len(expected) >= 15 and {"stop", "target", "signal"} <= reasons, "the slice must exercise every exit"
    assert len(paper) == len(expected)
    for got, want in zip(paper, expected.to_dict("records"), strict=True):
        assert got["side"] == want["side"]
        assert got["entry_at"] == want["entry_at"].to_pydatetime()
        assert got["entry_price"] == pytest.approx(want["entry_price"], rel=REL)
        assert got["size"] == pytest.approx(want["size"], rel=REL)
        assert got["exit_reason"] == want["exit_reason"]
        if want["exit_reason"] == "end":
            continue  # the engine closes at the last close; the venue keeps the position
        assert got["exit_at"] == want["exit_at"].to_pydatetime()
        assert got["exit_price"] == pytest.approx(want["exit_price"], rel=REL)
        assert got["fees"] == pytest.approx(want["fees"], rel=REL)
