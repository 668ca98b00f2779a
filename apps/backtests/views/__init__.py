"""Portal pages of the backtests app (see each module). Every object is read through the
selectors (another user's is a 404) and every write goes through a service; a service's error
is shown at the input it names, with everything typed kept."""

from apps.backtests.views.backtests import (
    backtest_cancel,
    backtest_detail,
    backtest_list,
    backtest_new,
    backtest_report,
    backtest_rerun,
    backtest_status,
    backtest_trades_csv,
)
from apps.backtests.views.research import (
    monte_carlo_cancel,
    monte_carlo_detail,
    monte_carlo_new,
    monte_carlo_status,
    optimisation_backtest_best,
    optimisation_cancel,
    optimisation_detail,
    optimisation_new,
    optimisation_status,
    walk_forward_cancel,
    walk_forward_detail,
    walk_forward_new,
    walk_forward_status,
)

__all__ = [
    "backtest_cancel",
    "backtest_detail",
    "backtest_list",
    "backtest_new",
    "backtest_report",
    "backtest_rerun",
    "backtest_status",
    "backtest_trades_csv",
    "monte_carlo_cancel",
    "monte_carlo_detail",
    "monte_carlo_new",
    "monte_carlo_status",
    "optimisation_backtest_best",
    "optimisation_cancel",
    "optimisation_detail",
    "optimisation_new",
    "optimisation_status",
    "walk_forward_cancel",
    "walk_forward_detail",
    "walk_forward_new",
    "walk_forward_status",
]
