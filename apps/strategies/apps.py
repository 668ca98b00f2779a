from django.apps import AppConfig


class StrategiesConfig(AppConfig):
    name = "apps.strategies"
    label = "strategies"

    def ready(self) -> None:
        from apps.marketdata.signals import candle_closed
        from apps.strategies import receivers, registry

        registry.load_plugins()
        candle_closed.connect(receivers.on_candle_closed, dispatch_uid="strategies.deployments_tick_enqueue")

        from apps.trades.signals import trading_halted

        trading_halted.connect(receivers.on_trading_halted_notify, dispatch_uid="strategies.notify_halted")
