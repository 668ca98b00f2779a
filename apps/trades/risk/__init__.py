"""Risk management: limits (apps.trades.risk.limits), pre-trade checks and loss limits
(checks), kill switches (switches), position sizing (sizing), marks (prices).

Import the submodules directly; this package imports nothing so that models can import it.
"""
