"""Local stand-ins for venues: FakeVenue (Binance spot REST API over HTTP) and FakeIB (ib_async
objects). Pure Python; importing these modules does not touch Django."""
