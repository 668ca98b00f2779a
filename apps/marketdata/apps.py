from django.apps import AppConfig


class MarketdataConfig(AppConfig):
    name = "apps.marketdata"
    label = "marketdata"

    def ready(self) -> None:
        from apps.common.streams import register_stream
        from apps.marketdata.streams import resolve_candles_stream

        register_stream("candles", resolve_candles_stream)
