"""The verified track record: numbers computed from the leader's real fills and the stored
closes, checked against values worked out by hand here (never by calling the code under test)."""

import math
import statistics
from datetime import UTC, date, datetime

import pytest

from apps.marketplace.models import Listing
from apps.marketplace.services import listings as listing_services
from apps.marketplace.services.track_record import listing_stats_refresh, track_record_compute
from apps.marketplace.tasks import listing_stats_refresh as listing_stats_refresh_task
from apps.marketplace.tasks import listings_stats_refresh_all
from tests.marketplace.conftest import END_OF_DAY_3

pytestmark = pytest.mark.django_db

# By hand, from LEADER_FILLS (capital 10,000; fee 0.1% of notional):
#   day 1: buy 10 @ 100 (fee 1.0): cash 8,999, 10 held at the day's close 104 -> 10,039
#   day 2: sell 10 @ 110 (fee 1.1): cash 10,097.9, flat                        -> 10,097.9
#   day 3: buy 5 @ 120 (fee 0.6): cash 9,497.3, 5 held at the day's close 100  -> 9,997.3
CURVE = [10000.0, 10039.0, 10097.9, 9997.3]
RETURNS = [CURVE[i] / CURVE[i - 1] - 1 for i in range(1, len(CURVE))]
EXPECTED_RETURN = 9997.3 / 10000 - 1
EXPECTED_DRAWDOWN = (10097.9 - 9997.3) / 10097.9
EXPECTED_SHARPE = statistics.mean(RETURNS) / statistics.stdev(RETURNS) * math.sqrt(365)


def test_track_record_numbers_match_a_hand_computation(leader_with_fills):
    record = track_record_compute(deployment=leader_with_fills, as_of=END_OF_DAY_3)

    assert [d for d, _ in record.curve] == [date(2023, 12, 31), date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)]
    assert [v for _, v in record.curve] == pytest.approx(CURVE, abs=1e-9)
    assert record.total_return == pytest.approx(EXPECTED_RETURN, abs=1e-12)
    assert record.max_drawdown == pytest.approx(EXPECTED_DRAWDOWN, abs=1e-12)
    assert record.sharpe == pytest.approx(EXPECTED_SHARPE, rel=1e-9)
    assert record.trades == 1  # one round trip closed (buy 10, sell 10); the last buy is open
    assert record.fills == 3
    assert record.since == datetime(2024, 1, 1, 1, tzinfo=UTC)
    assert record.is_live is False


def test_days_without_candles_carry_the_last_close(leader_with_fills):
    record = track_record_compute(deployment=leader_with_fills, as_of=datetime(2024, 1, 5, 12, tzinfo=UTC))

    assert [v for _, v in record.curve][-3:] == pytest.approx([9997.3, 9997.3, 9997.3])


def test_stats_refresh_writes_the_columns(leader_with_fills, make_listing):
    listing = make_listing(leader_with_fills)

    listing_stats_refresh(listing_id=listing.pk, as_of=END_OF_DAY_3)

    listing.refresh_from_db()
    assert listing.stats_return == pytest.approx(EXPECTED_RETURN, abs=1e-12)
    assert listing.stats_max_drawdown == pytest.approx(EXPECTED_DRAWDOWN, abs=1e-12)
    assert listing.stats_sharpe == pytest.approx(EXPECTED_SHARPE, rel=1e-9)
    assert listing.stats_trades == 1
    assert listing.stats_since == datetime(2024, 1, 1, 1, tzinfo=UTC)
    assert listing.is_live is False
    assert listing.stats_updated_at is not None


def test_a_listing_without_fills_has_no_numbers(make_listing):
    listing = make_listing()

    listing_stats_refresh(listing_id=listing.pk)

    listing.refresh_from_db()
    assert (listing.stats_return, listing.stats_max_drawdown, listing.stats_sharpe) == (None, None, None)
    assert listing.stats_trades == 0 and listing.stats_since is None


def test_followers_and_capital_count_active_subscriptions(approved_listing, bob, mallory, make_subscriber):
    from apps.marketplace.services.subscriptions import subscription_pause

    make_subscriber(bob, approved_listing, allocation="1500")
    paused = make_subscriber(mallory, approved_listing, allocation="2000")
    subscription_pause(subscription=paused, actor=mallory)

    listing_stats_refresh_task(approved_listing.pk)

    approved_listing.refresh_from_db()
    assert approved_listing.stats_followers == 1
    assert approved_listing.stats_capital == 1500


def test_a_live_account_is_labelled_live(alice, paper_btc, leader_with_fills, make_listing):
    from apps.accounts.models import TradingAccount

    listing = make_listing(leader_with_fills)
    TradingAccount.objects.filter(pk=leader_with_fills.account_id).update(kind=TradingAccount.Kind.CCXT)

    listing_stats_refresh(listing_id=listing.pk, as_of=END_OF_DAY_3)

    listing.refresh_from_db()
    assert listing.is_live is True


def test_editing_the_listing_never_changes_the_numbers(approved_listing):
    before = Listing.objects.values("stats_return", "stats_sharpe", "stats_trades").get(pk=approved_listing.pk)

    listing_services.listing_update(listing=approved_listing, actor=approved_listing.owner, title="Best ever 1000%")

    after = Listing.objects.values("stats_return", "stats_sharpe", "stats_trades").get(pk=approved_listing.pk)
    assert after == before


def test_the_beat_refreshes_every_listing_but_drafts(approved_listing, make_listing, alice, leader_account, paper_btc):
    from tests.trades.execution_support import make_deployment

    draft = make_listing(make_deployment(leader_account, paper_btc, name="Other"))
    Listing.objects.filter(pk=approved_listing.pk).update(stats_updated_at=None, stats_trades=0)

    listings_stats_refresh_all()

    approved_listing.refresh_from_db()
    draft.refresh_from_db()
    assert approved_listing.stats_trades == 1 and approved_listing.stats_updated_at is not None
    assert draft.stats_trades == 0
