"""RELIABILITY 13, the stateful half: a Hypothesis state machine over signals (orders of any side
and size, from two deployments and the manual book), fills and price moves, checking after every
fill that no position grew past its limits and that no accepted order was above the per-order
maximum. Orders fill at the price they were decided at (the state machine moves the price only
when nothing is open: gap risk is not what pre-trade checks can prevent).

Also checked: a reducing order is never refused (limits never trap a position)."""

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from apps.trades.errors import RiskRefusedError
from apps.trades.models import Order, Position
from tests.trades.risk_fixtures import check, hold, make_account, make_deployment, make_instrument, open_order

pytestmark = pytest.mark.django_db
D = Decimal
MAX_ORDER = D("600")
MAX_POSITION = D("1000")
MAX_SYMBOL = D("1500")


def test_positions_never_exceed_their_limits(alice: Any) -> None:
    instrument = make_instrument()
    runs = {"n": 0}

    class Book(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            runs["n"] += 1
            self.account = make_account(
                alice,
                name=f"Paper {runs['n']}",
                risk_limits={"max_symbol_exposure": str(MAX_SYMBOL), "max_order_notional": str(MAX_ORDER)},
            )
            risk = {"max_position_notional": str(MAX_POSITION), "max_order_notional": str(MAX_ORDER)}
            self.deployments = [
                make_deployment(self.account, instrument, name="A", risk=risk),
                make_deployment(self.account, instrument, name="B", risk=risk),
                None,  # the manual book
            ]
            self.price = D("100")

        def _position(self, deployment: Any) -> Decimal:
            qty = (
                Position.objects.filter(account=self.account, deployment=deployment, instrument=instrument)
                .values_list("quantity", flat=True)
                .first()
            )
            return qty or D(0)

        def _open(self) -> Any:
            return Order.objects.filter(account=self.account, status=Order.Status.OPEN)

        @rule(
            who=st.integers(0, 2),
            side=st.sampled_from(["buy", "sell"]),
            quantity=st.decimals(min_value="0.5", max_value="7", places=1),
            reduce_only=st.sampled_from([False, False, False, True]),
        )
        def signal(self, who: int, side: str, quantity: Decimal, reduce_only: bool) -> None:
            deployment = self.deployments[who]
            position = self._position(deployment)
            reducing = position != 0 and (position > 0) != (side == "buy") and quantity <= abs(position)
            try:
                check(
                    self.account,
                    instrument,
                    side,
                    str(quantity),
                    price=str(self.price),
                    deployment=deployment,
                    reduce_only=reduce_only,
                )
            except RiskRefusedError as error:
                assert not reducing, f"a reducing order was refused: {error.code} {error.message}"
                return
            assert reducing or quantity * self.price <= MAX_ORDER
            open_order(
                self.account,
                instrument,
                side,
                str(quantity),
                deployment=deployment,
                price=str(self.price),
                reduce_only=reduce_only,
            )

        @rule()
        def fill(self) -> None:
            grew: set[Any] = set()
            for order in self._open().order_by("pk"):
                before = self._position(order.deployment)
                delta = order.quantity if order.side == "buy" else -order.quantity
                hold(self.account, instrument, str(before + delta), deployment=order.deployment, price=str(order.price))
                if abs(before + delta) > abs(before):
                    grew.add(order.deployment_id)
                Order.objects.filter(pk=order.pk).update(status=Order.Status.FILLED, filled_quantity=order.quantity)
            for deployment in self.deployments:
                notional = abs(self._position(deployment)) * self.price
                if deployment is not None and deployment.pk in grew:
                    assert notional <= MAX_POSITION, f"{deployment.name} holds {notional}"
            if grew:
                exposure = sum(abs(self._position(d)) for d in self.deployments) * self.price
                assert exposure <= MAX_SYMBOL, f"the symbol exposure is {exposure}"

        @precondition(lambda self: not self._open().exists())
        @rule(move=st.decimals(min_value="-0.5", max_value="0.5", places=2))
        def move_price(self, move: Decimal) -> None:
            self.price = max(D("1"), (self.price * (1 + move)).quantize(D("0.01")))

    run_state_machine_as_test(
        Book, settings=settings(max_examples=100, stateful_step_count=20, deadline=None, database=None)
    )
