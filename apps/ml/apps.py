from django.apps import AppConfig


class MlConfig(AppConfig):
    name = "apps.ml"
    label = "ml"
    verbose_name = "ML strategies"

    def ready(self) -> None:
        # The "ml" strategy (a trained model's signals) joins the strategy registry, so backtests,
        # deployments and the marketplace run it like any other strategy.
        from apps.ml import strategy  # noqa: F401
