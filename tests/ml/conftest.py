"""Fixtures of the ML app's tests (see support.py)."""

from tests.ml.support import _fresh_models, btc, ml, pushed, sent

__all__ = ["_fresh_models", "btc", "ml", "pushed", "sent"]
