from django.apps import AppConfig


class StrategiesConfig(AppConfig):
    name = "apps.strategies"
    label = "strategies"

    def ready(self) -> None:
        from apps.strategies import registry

        registry.load_plugins()
