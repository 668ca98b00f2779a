"""An ML strategy can be listed on the marketplace like any other strategy: its owner publishes
the paper deployment trading the promoted model, staff approve it, and a follower copies its
fills with a copy deployment of their own (they never run, see or need the model)."""

import pytest
from django.test import Client

from apps.marketplace.services import listings
from apps.marketplace.services.subscriptions import subscription_create
from apps.ml import services
from apps.strategies.models import Deployment
from tests.ml.support import paper_account

pytestmark = pytest.mark.django_db


def test_an_ml_deployment_is_listed_approved_and_copied(ml, alice, bob, staff, sent):
    assert services.training_run_now(ml_strategy=ml, trigger="manual").status == "promoted"
    deployment = services.ml_deploy(
        owner=alice, ml_strategy=ml, data={"account_id": paper_account(alice).pk, "capital": "5000"}
    )

    listing = listings.listing_create(owner=alice, deployment_id=deployment.pk, title="BTC direction (ML)")
    listing = listings.listing_submit(listing=listing, actor=alice)
    listing = listings.listing_approve(listing=listing, actor=staff)
    subscription = subscription_create(
        follower=bob, listing=listing, account_id=paper_account(bob, "2000").pk, allocation="1000"
    )

    assert listing.status == "approved" and listing.deployment_id == deployment.pk
    copy = Deployment.objects.get(pk=subscription.deployment_id)
    assert copy.owner == bob and copy.strategy_key != "ml" and "model" not in copy.params
    # the public listing page shows the listing to the follower; the model page stays alice's
    client = Client()
    client.force_login(bob)
    assert client.get(f"/marketplace/{listing.pk}/").status_code == 200
    assert client.get(f"/ml/{ml.pk}/").status_code == 404
