"""The market-data admin: instruments, series (read-only facts), and "Upload candles"."""

import gzip

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.audit.models import AuditEvent
from apps.marketdata import services
from apps.marketdata.models import Candle, CandleSeries
from tests.users.steps import verified_client

UPLOAD_URL = "/admin/marketdata/candleseries/upload/"
SERIES_URL = "/admin/marketdata/candleseries/"
CSV = (
    "timestamp,open,high,low,close,volume\n"
    "2024-01-01T00:00:00Z,10,12,9,11,5\n"
    "2024-01-01T00:05:00Z,11,13,10,12,6\n"
    "2024-01-01T00:10:00Z,12,14,11,13,7\n"
)


@pytest.fixture
def staff_client(staff, enable_2fa):
    return verified_client(staff, enable_2fa(staff))


@pytest.fixture
def instrument(db):
    return services.instrument_get_or_create(venue="binance", symbol="BTC/USDT")


def upload(client, instrument, name: str, content: bytes, timeframe: str = "5m"):
    return client.post(
        UPLOAD_URL,
        {"file": SimpleUploadedFile(name, content), "instrument": instrument.pk, "timeframe": timeframe},
        follow=True,
    )


def test_upload_imports_and_audits(staff_client, staff, instrument):
    response = upload(staff_client, instrument, "BTC-USDT_5m.csv.gz", gzip.compress(CSV.encode()))

    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == SERIES_URL
    assert "BTC-USDT_5m.csv.gz: 3 rows read, 3 written into BTC/USDT @ binance 5m" in response.content.decode()
    assert Candle.objects.filter(instrument=instrument, timeframe="5m").count() == 3
    event = AuditEvent.objects.get(action="candles.imported")
    assert event.actor == staff
    assert event.target_id == str(instrument.pk)
    assert event.details["rows"] == 3
    assert event.details["written"] == 3
    assert event.details["file"] == "BTC-USDT_5m.csv.gz"


def test_upload_of_a_broken_file_shows_the_line_and_stores_nothing(staff_client, instrument):
    broken = CSV.replace("2024-01-01T00:05:00Z,11,13,10,12,6", "2024-01-01T00:05:00Z,11,9,10,12,6")

    response = upload(staff_client, instrument, "bad.csv", broken.encode())

    assert response.status_code == 200
    assert "bad.csv: line 3: high 9.0 is below low 10.0" in response.content.decode()
    assert not Candle.objects.exists()
    assert not AuditEvent.objects.filter(action="candles.imported").exists()


def test_upload_page_and_series_list(staff_client, instrument):
    upload(staff_client, instrument, "a.csv", CSV.encode())

    page = staff_client.get(UPLOAD_URL)
    listing = staff_client.get(SERIES_URL)
    detail = staff_client.get(f"{SERIES_URL}{CandleSeries.objects.get().pk}/change/")

    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in page.content.decode()
    assert listing.status_code == 200
    assert "Upload candles" in listing.content.decode()
    assert detail.status_code == 200
    assert "3" in detail.content.decode()
    assert 'name="count"' not in detail.content.decode()  # facts are read-only


def test_instrument_admin_lists_and_searches(staff_client, instrument):
    services.instrument_get_or_create(venue="kraken", symbol="ETH/EUR")

    response = staff_client.get("/admin/marketdata/instrument/?q=binance")

    assert response.status_code == 200
    body = response.content.decode()
    assert "BTC/USDT" in body
    assert "ETH/EUR" not in body


def test_outsider_cannot_upload(client, mallory, instrument):
    client.force_login(mallory)

    response = client.post(
        UPLOAD_URL, {"file": SimpleUploadedFile("a.csv", CSV.encode()), "instrument": instrument.pk, "timeframe": "5m"}
    )

    assert response.status_code == 302
    assert not Candle.objects.exists()
