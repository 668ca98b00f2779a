"""Under pytest-xdist each worker process has a Redis database of its own (tests/conftest.py):
the suite empties its database between tests, and a broker queue or channel group shared by
two workers would hand one test's messages to the other's."""

import os

import pytest
from django.conf import settings

from tests.conftest import REDIS_URL_OF_THE_RUN, _redis_url_of_xdist_worker


def test_worker_k_uses_the_database_k_above_redis_urls() -> None:
    assert _redis_url_of_xdist_worker("redis://127.0.0.1:6379/9", "gw0") == "redis://127.0.0.1:6379/9"
    assert _redis_url_of_xdist_worker("redis://127.0.0.1:6379/9", "gw1") == "redis://127.0.0.1:6379/10"
    assert _redis_url_of_xdist_worker("redis://:pw@redis:6380", "gw2") == "redis://:pw@redis:6380/2"


def test_a_worker_past_the_last_redis_database_is_a_usage_error() -> None:
    with pytest.raises(pytest.UsageError, match="no Redis database for xdist worker gw2"):
        _redis_url_of_xdist_worker("redis://127.0.0.1:6379/14", "gw2")


@pytest.mark.redis
def test_cache_layer_broker_and_child_processes_share_this_workers_database() -> None:
    from channels.layers import get_channel_layer
    from django.core.cache import cache

    from tradingplatform.celery import app

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    url = settings.REDIS_URL
    assert url == (_redis_url_of_xdist_worker(REDIS_URL_OF_THE_RUN, worker) if worker else REDIS_URL_OF_THE_RUN)
    assert os.environ["REDIS_URL"] == url
    assert cache._cache._servers == [url]  # type: ignore[attr-defined]
    assert [host["address"] for host in get_channel_layer().hosts] == [url]
    assert app.conf.broker_url == url
    assert app.connection_for_write().as_uri(include_password=True) == url
