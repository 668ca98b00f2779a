"""The strategy registry: keys to Strategy classes.

Code strategies are plugins that operators install, never uploads: every module in
``apps/strategies/library/`` is imported at start-up, and installed packages can add more through
the entry-point group ``tradingplatform.strategies`` (each entry point names a Strategy subclass
or a module that registers its classes). Users write rule strategies instead
(:mod:`apps.strategies.rules`), which compile to the same form.

    from apps.strategies.registry import get_strategy
    strategy = get_strategy("sma_cross", fast=10, slow=30)
"""

import importlib
import logging
import pkgutil
from importlib.metadata import entry_points
from typing import Any

from apps.strategies.base import Strategy
from apps.strategies.errors import UnknownStrategyError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "tradingplatform.strategies"

_REGISTRY: dict[str, type[Strategy]] = {}
_loaded = False


def register[S: type[Strategy]](cls: S) -> S:
    """Class decorator: add a Strategy subclass under its ``key`` (unique)."""
    if not cls.key:
        raise ValueError(f"{cls.__name__} has no key")
    existing = _REGISTRY.get(cls.key)
    if existing is not None and existing is not cls:
        raise ValueError(f"Strategy key '{cls.key}' is taken by {existing.__module__}.{existing.__name__}")
    _REGISTRY[cls.key] = cls
    return cls


def load_plugins() -> None:
    """Import the library modules and the entry points once (idempotent)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from apps.strategies import library

    for module in pkgutil.iter_modules(library.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{library.__name__}.{module.name}")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception:  # a broken plugin must not take the platform down
            logger.exception("strategy plugin %s failed to load", entry.name)
            continue
        if isinstance(loaded, type) and issubclass(loaded, Strategy):
            register(loaded)


def strategy_class(key: str) -> type[Strategy]:
    load_plugins()
    try:
        return _REGISTRY[key]
    except KeyError:
        raise UnknownStrategyError(key) from None


def get_strategy(key: str, /, params: dict[str, Any] | None = None, **kwargs: Any) -> Strategy:
    """An instance of the strategy ``key`` with validated params (InvalidParamsError if not)."""
    return strategy_class(key)(params, **kwargs)


def strategy_classes(*, public_only: bool = True) -> list[type[Strategy]]:
    """Every registered class, sorted by key (public ones unless told otherwise)."""
    load_plugins()
    return [cls for key, cls in sorted(_REGISTRY.items()) if cls.is_public or not public_only]
