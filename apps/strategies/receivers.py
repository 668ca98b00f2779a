"""Receivers of the strategies app, connected in StrategiesConfig.ready().

Market data announces each closed candle (`apps.marketdata.signals.candle_closed`, after
commit); the tick service lets the paper venue match the bar and queues one tick per running
deployment on that series.
"""

from datetime import datetime
from typing import Any

from apps.strategies.services import ticks


def on_candle_closed(sender: Any, *, instrument_id: int, timeframe: str, ts: datetime, **kwargs: Any) -> None:
    ticks.deployments_tick_enqueue(instrument_id=instrument_id, timeframe=timeframe, ts=ts)


def on_trading_halted_notify(
    sender: Any, account_id: int | None, deployment_id: int | None, reason: str = "", **kwargs: Any
) -> None:
    """Tell the owner a deployment (or a whole account) was paused or halted, and why. A halt
    for the maximum drawdown is a "drawdown reached" notification, a daily-loss pause a "daily
    loss reached" one. The platform-wide switch is the operators' (audited), not notified."""
    import logging

    from apps.notifications.models import Event
    from apps.notifications.services import notify
    from apps.strategies.models import Deployment
    from apps.trades.models import RiskEvent

    try:
        if deployment_id is not None:
            deployment = Deployment.objects.filter(pk=deployment_id).first()
            if deployment is None:
                return
            code = (
                RiskEvent.objects.filter(deployment_id=deployment_id)
                .exclude(kind=RiskEvent.Kind.REFUSED)
                .values_list("code", flat=True)
                .first()
                or ""
            )
            halted = deployment.status == Deployment.Status.HALTED
            event = Event.DEPLOYMENT_HALTED if halted else Event.DEPLOYMENT_PAUSED
            if "drawdown" in code or "drawdown" in reason.lower():
                event = Event.DRAWDOWN
            elif "daily_loss" in code or "daily loss" in reason.lower():
                event = Event.DAILY_LOSS
            name = deployment.name or f"Deployment {deployment.pk}"
            notify(
                user_id=deployment.owner_id,
                event=event,
                title=f"{name} {'halted' if halted else 'paused'}",
                body=reason or "No reason given.",
                data={
                    "deployment_id": deployment.pk,
                    "account_id": account_id,
                    "status": deployment.status,
                    "code": code,
                },
                dedupe_key=f"deployment-stop:{deployment.pk}:{deployment.fence}",
            )
        elif account_id is not None:
            from apps.accounts.models import TradingAccount

            account = TradingAccount.objects.filter(pk=account_id).first()
            if account is None:
                return
            notify(
                user_id=account.owner_id,
                event=Event.DEPLOYMENT_HALTED,
                title=f"Trading halted on account {account.name}",
                body=reason or "No reason given.",
                data={"account_id": account.pk},
            )
    except Exception:
        logging.getLogger(__name__).exception("notifying the halt of deployment %s failed", deployment_id)
