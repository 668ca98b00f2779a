"""Settings of the Celery worker processes the fault tests start (tests/fault/processes.py).

The test suite's settings, plus what only a fault test wants, from the environment the test
gives the worker:

- ``TP_TEST_SETTINGS``: a JSON object of setting names to values, applied over the test
  settings (a short broker visibility timeout, CCXT_API_URL_OVERRIDES pointed at the local
  FakeVenue, short in-flight thresholds);
- ``TP_DB_APPLICATION_NAME``: the PostgreSQL application_name of the worker's connections, so a
  test can find and terminate exactly those (scenario 22) and no other.
"""

import json
import os

from tradingplatform.settings.test import *  # noqa: F403
from tradingplatform.settings.test import DATABASES

globals().update(json.loads(os.environ.get("TP_TEST_SETTINGS", "{}")))

_application_name = os.environ.get("TP_DB_APPLICATION_NAME", "")
if _application_name and "postgresql" in DATABASES["default"]["ENGINE"]:
    DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = _application_name
