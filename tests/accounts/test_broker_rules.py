"""Scenario 15 (Decimal precision and filters): rounding with MarketRules, and FakeVenue never
rejecting a rounded order for LOT_SIZE or PRICE_FILTER. Hypothesis draws price, quantity, step,
tick and minimum notional. No database."""

from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.accounts.brokers.base import InvalidOrderError, MarketRules, OrderRequest
from apps.accounts.brokers.ccxt import round_stop
from tests.fakes.fake_venue import ORDER_PATH, FakeVenue, fake_venue_broker

steps = st.builds(
    lambda mantissa, exponent: (D(mantissa) * D(10) ** exponent).normalize(),
    st.sampled_from([1, 2, 5, 25]),
    st.integers(min_value=-8, max_value=1),
)
prices = st.decimals(min_value=D("0.00000001"), max_value=D("500000"), places=8, allow_nan=False, allow_infinity=False)
quantities = st.decimals(min_value=D("0"), max_value=D("1000"), places=10, allow_nan=False, allow_infinity=False)
notionals = st.sampled_from([D(0), D("1"), D("5"), D("10"), D("100")])
sides = st.sampled_from(["buy", "sell"])


@given(qty=quantities, step=steps)
def test_quantity_rounds_down_to_the_step(qty, step):
    rules = MarketRules(symbol="X/Y", step_size=step)
    rounded = rules.round_quantity(qty)
    assert isinstance(rounded, D)
    assert rounded <= qty
    assert qty - rounded < step
    assert rounded % step == 0


@given(price=prices, tick=steps, side=sides)
def test_limit_price_rounds_to_the_tick_on_the_safe_side(price, tick, side):
    rules = MarketRules(symbol="X/Y", tick_size=tick)
    rounded = rules.round_price(price, side)
    assert rounded % tick == 0
    assert abs(rounded - price) < tick
    if side == "buy":
        assert rounded <= price  # never pay more than asked
    else:
        assert rounded >= price  # never receive less than asked


@given(price=prices, tick=steps, side=sides)
def test_stop_trigger_rounds_to_trigger_no_later(price, tick, side):
    rules = MarketRules(symbol="X/Y", tick_size=tick)
    rounded = round_stop(rules, price, side)
    assert rounded % tick == 0 and abs(rounded - price) < tick
    if side == "sell":
        assert rounded >= price  # a sell stop guarding a long fires at or above the asked level
    else:
        assert rounded <= price


@given(qty=quantities, price=prices, step=steps, min_notional=notionals)
def test_check_explains_orders_below_the_minimums(qty, price, step, min_notional):
    rules = MarketRules(symbol="X/Y", step_size=step, min_quantity=step, min_notional=min_notional)
    rounded = rules.round_quantity(qty)
    reason = rules.check(rounded, price)
    if rounded <= 0 or rounded < step or rounded * price < min_notional:
        assert reason and isinstance(reason, str)
    else:
        assert reason is None


def test_the_venue_never_rejects_a_rounded_order_for_lot_size_or_price_filter():
    """Through ccxt against FakeVenue: every order the rules let through is accepted (no
    -1013 LOT_SIZE / PRICE_FILTER); every order they refuse is refused before any POST."""
    with FakeVenue(balances={"USDT": D("1e20"), "TST": D("1e12")}) as venue:
        broker = fake_venue_broker(venue, timeout_ms=3000)
        counter = iter(range(10**9))

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(qty=quantities, price=prices, step=steps, tick=steps, min_notional=notionals, side=sides)
        def run(qty, price, step, tick, min_notional, side):
            venue.add_symbol(
                "TSTUSDT",
                "TST",
                "USDT",
                price="1000",
                tick_size=tick,
                step_size=step,
                max_qty="1e9",
                max_price="1e9",
                min_notional=min_notional,
            )
            broker.reload_markets()
            rules = broker.market_rules("TST/USDT")
            assert (rules.step_size, rules.tick_size) == (step, tick)
            coid = f"r{next(counter)}"
            posts_before = len(venue.requests_for(method="POST", path=ORDER_PATH))
            request = OrderRequest(
                client_order_id=coid, symbol="TST/USDT", side=side, type="limit", quantity=qty, price=price
            )
            rounded_qty = rules.round_quantity(qty)
            rounded_price = rules.round_price(price, side)
            expected_refusal = rounded_price <= 0 or rules.check(rounded_qty, rounded_price) is not None
            try:
                state = broker.submit(request)
            except InvalidOrderError as exc:
                assert "LOT_SIZE" not in exc.message and "PRICE_FILTER" not in exc.message, exc.message
                assert expected_refusal, exc.message
                assert len(venue.requests_for(method="POST", path=ORDER_PATH)) == posts_before  # nothing sent
                return
            assert not expected_refusal
            assert state.quantity == rounded_qty
            assert venue.requests_for(method="POST", path=ORDER_PATH)[-1].status == 200
            assert len(venue.orders_for(coid)) == 1

        run()
