"""Reads of the strategies app that leave it: the catalogue of code strategies (public, the same
for everyone), rule sets and deployments (owner-scoped: another user's rule set or deployment
does not exist for you), with a deployment's signals, orders, fills, positions, P&L and chart."""

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet

from apps.common.errors import NotFound
from apps.strategies import rules as rule_engine
from apps.strategies.base import Strategy
from apps.strategies.errors import UnknownStrategyError
from apps.strategies.models import Deployment, LookaheadVerdict, RuleSet, Signal, TickRun
from apps.strategies.params import params_schema
from apps.strategies.registry import strategy_class, strategy_classes
from apps.users.models import User


def _summary(documentation: str) -> str:
    """The first paragraph of a docstring, on one line."""
    paragraph = documentation.strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split())


def strategy_describe(cls: type[Strategy]) -> dict[str, Any]:
    """What the catalogue says about one strategy class: key, name, summary, documentation,
    the Params JSON schema, and the warm-up of the default parameters (bars)."""
    documentation = cls.documentation()
    return {
        "key": cls.key,
        "name": cls.name or cls.key,
        "summary": _summary(documentation),
        "documentation": documentation,
        "params_schema": params_schema(cls.Params),
        "warmup": int(cls().warmup()),
    }


def strategy_catalogue() -> list[dict[str, Any]]:
    """Every public code strategy, by key (see `strategy_describe`)."""
    return [strategy_describe(cls) for cls in strategy_classes()]


def strategy_get(*, key: str) -> dict[str, Any]:
    """One public strategy's description; NotFound (404) for an unknown or hidden key."""
    try:
        cls = strategy_class(key)
    except UnknownStrategyError:
        cls = None
    if cls is None or not cls.is_public:
        raise NotFound(f"There is no strategy '{key}'.")
    return strategy_describe(cls)


def rule_indicators() -> list[dict[str, Any]]:
    """What the rule editor offers: indicators with their arguments and outputs."""
    return rule_engine.rule_indicators()


def rule_set_list_for_user(*, user: User) -> QuerySet[RuleSet]:
    return RuleSet.objects.filter(owner=user).order_by("-updated_at", "-id")


def rule_set_get_for_user(*, user: User, rule_set_id: int) -> RuleSet:
    """The user's rule set; NotFound (404) for a missing one or another user's."""
    rule_set = RuleSet.objects.filter(owner=user, pk=rule_set_id).first()
    if rule_set is None:
        raise NotFound("No such rule set.")
    return rule_set


def lookahead_verdict_get(*, fingerprint: str) -> LookaheadVerdict | None:
    return LookaheadVerdict.objects.filter(fingerprint=fingerprint).first()


# --- deployments (owner-scoped: another user's deployment does not exist for you) -----------------

DEPLOYMENT_FILTERS = ("status", "account", "instrument")
CHART_BARS = 500
CHART_MARKERS = 500


def deployment_list_for_user(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[Deployment]:
    """The user's deployments, newest first; ``filters``: status, account (id), instrument (id).
    Copy books (kind ``copy``) are not here: they are managed through their subscription."""
    queryset = (
        Deployment.objects.filter(owner=user, kind=Deployment.Kind.STRATEGY)
        .select_related("account", "rule_set")
        .prefetch_related("instruments")
        .order_by("-created_at", "-id")
    )
    filters = filters or {}
    if filters.get("status"):
        queryset = queryset.filter(status=filters["status"])
    if filters.get("account"):
        queryset = queryset.filter(account_id=filters["account"])
    if filters.get("instrument"):
        queryset = queryset.filter(instruments=filters["instrument"])
    return queryset


def deployment_get_for_user(*, user: User, deployment_id: int) -> Deployment:
    """The user's deployment; NotFound (404) for a missing one, another user's, or a copy book."""
    deployment = (
        Deployment.objects.filter(owner=user, pk=deployment_id, kind=Deployment.Kind.STRATEGY)
        .select_related("account", "rule_set", "owner")
        .prefetch_related("instruments")
        .first()
    )
    if deployment is None:
        raise NotFound("No such deployment.")
    return deployment


def deployment_signals(*, deployment: Deployment) -> QuerySet[Signal]:
    return Signal.objects.filter(deployment=deployment).select_related("instrument").order_by("-bar_ts", "-id")


def deployment_orders(*, deployment: Deployment) -> QuerySet[Any]:
    from apps.trades.models import Order

    return Order.objects.filter(deployment=deployment).select_related("instrument").order_by("-created_at", "-id")


def deployment_fills(*, deployment: Deployment) -> QuerySet[Any]:
    from apps.trades.models import Fill

    return (
        Fill.objects.filter(deployment=deployment).select_related("order", "instrument").order_by("-filled_at", "-id")
    )


def deployment_positions(*, deployment: Deployment) -> QuerySet[Any]:
    from apps.trades.models import Position

    return Position.objects.filter(deployment=deployment).select_related("instrument").order_by("symbol")


def deployment_tick_runs(*, deployment: Deployment) -> QuerySet[TickRun]:
    return TickRun.objects.filter(deployment=deployment).order_by("-bar_ts", "-id")


def deployment_pnl(*, deployment: Deployment) -> dict[str, Any]:
    """Realised and unrealised P&L, fees, equity, fills and slippage (the execution service's
    count; open positions marked at their instrument's newest close)."""
    from apps.trades.services.positions import deployment_pnl_summary

    return deployment_pnl_summary(deployment=deployment)


def deployment_equity_series(*, deployment: Deployment) -> dict[str, Any]:
    """The realised P&L after each fill (net of fees), as chart points: ``t`` (epoch seconds),
    ``pnl`` and ``equity`` (capital + pnl)."""
    from apps.trades.models import Fill

    rows = (
        Fill.objects.filter(deployment=deployment)
        .order_by("filled_at", "id")
        .values_list("filled_at", "realized_pnl", "fee")
    )
    total = Decimal(0)
    points: list[dict[str, Any]] = []
    for filled_at, pnl, fee in rows:
        total += pnl - fee
        point = {"t": int(filled_at.timestamp()), "pnl": total, "equity": deployment.capital + total}
        if points and points[-1]["t"] == point["t"]:
            points[-1] = point
        else:
            points.append(point)
    return {"capital": deployment.capital, "points": points}


def deployment_chart(
    *, deployment: Deployment, instrument_id: int | None = None, bars: int = CHART_BARS
) -> dict[str, Any]:
    """What the deployment page's chart draws: the newest ``bars`` candles of one of its
    instruments (the first by default) and a marker per fill (entries and exits)."""
    from apps.marketdata.storage import candles_frame
    from apps.trades.models import Fill

    instruments = list(deployment.instruments.all())
    chosen = next((i for i in instruments if i.pk == instrument_id), instruments[0] if instruments else None)
    if chosen is None:
        return {"instrument": None, "timeframe": deployment.timeframe, "candles": [], "markers": []}
    frame = candles_frame(chosen.pk, deployment.timeframe, limit=max(1, min(bars, 5000)))
    candles = [
        {"t": int(ts.timestamp()), "o": o, "h": h, "l": low, "c": c, "v": v}
        for ts, o, h, low, c, v in zip(
            frame.index,
            frame["open"].tolist(),
            frame["high"].tolist(),
            frame["low"].tolist(),
            frame["close"].tolist(),
            frame["volume"].tolist(),
            strict=True,
        )
    ]
    fills = (
        Fill.objects.filter(deployment=deployment, instrument=chosen)
        .select_related("order")
        .order_by("-filled_at", "-id")[:CHART_MARKERS]
    )
    markers = [fill_marker(fill, deployment.timeframe) for fill in reversed(list(fills))]
    return {
        "instrument": chosen.pk,
        "symbol": chosen.symbol,
        "timeframe": deployment.timeframe,
        "tick_size": chosen.tick_size,
        "candles": candles,
        "markers": markers,
    }


def fill_marker(fill: Any, timeframe: str) -> dict[str, Any]:
    """A chart marker for one fill, at the bar it fell in: entries (reduce-only false) and exits."""
    from apps.marketdata import timeframes as tf

    bar = tf.floor(fill.filled_at, timeframe)
    order = fill.order
    is_exit = bool(order.reduce_only) or order.leg in ("exit", "stop", "target", "close")
    return {
        "t": int(bar.timestamp()),
        "side": fill.side,
        "price": fill.price,
        "quantity": fill.quantity,
        "kind": "exit" if is_exit else "entry",
        "leg": order.leg,
        "fill": fill.pk,
    }
