"""An example domain: orders you place, add lines to, pay and cancel, with rules.

Run it: python examples/orders.py  (writes a store in a temporary directory)

Two aggregate styles side by side:
- Order uses explicit events: command methods check the rules and call
  self.trigger(SomeEvent(...)); apply_* methods (dispatched by the annotated event class)
  change the state.
- Customer uses @event-decorated methods: the signature is the event, the body changes
  the state (the rule check at its top runs before anything is recorded).
"""

from __future__ import annotations

import tempfile
from typing import ClassVar

import msgspec

import chronolog as cl
from chronolog.domain import (
    Aggregate,
    Application,
    CommandContext,
    DomainEvent,
    SnapshotPolicy,
    command,
    event,
)

# ---------------------------------------------------------------- the rules' exceptions

class OrderError(Exception):
    """A domain rule of orders refused a command."""


class OrderNotOpen(OrderError):
    """Lines and payments need an open order."""


class EmptyOrder(OrderError):
    """An order without lines cannot be paid."""


class WrongAmount(OrderError):
    """A payment must cover the order total exactly."""


class InvalidLine(OrderError):
    """A line needs a positive quantity and a non-negative price."""


class PaidOrderCannotBeCancelled(OrderError):
    """Paid orders are refunded, not cancelled."""


class AlreadyPlaced(OrderError):
    """An order id is placed once."""


# ---------------------------------------------------------------- events

class OrderPlaced(DomainEvent, frozen=True):
    customer: str


class LineAdded(DomainEvent, frozen=True):
    sku: str
    quantity: int
    unit_price_cents: int


class OrderPaid(DomainEvent, frozen=True):
    amount_cents: int


class OrderCancelled(DomainEvent, frozen=True):
    reason: str


class Line(msgspec.Struct, frozen=True):
    sku: str
    quantity: int
    unit_price_cents: int


# ---------------------------------------------------------------- aggregates

class Order(Aggregate):
    """An order: stream "order-<id>". Statuses: new -> open -> paid | cancelled."""

    snapshot_policy: ClassVar[SnapshotPolicy | None] = None

    customer: str
    status: str
    lines: list[Line]
    total_cents: int

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.customer = ""
        self.status = "new"
        self.lines = []
        self.total_cents = 0

    # commands: check the rules, then trigger
    def place(self, customer: str) -> None:
        if self.status != "new":
            raise AlreadyPlaced(f"order {self.id} is already placed")
        if not customer:
            raise OrderError("an order needs a customer")
        self.trigger(OrderPlaced(customer=customer))

    def add_line(self, sku: str, quantity: int, unit_price_cents: int) -> None:
        if self.status != "open":
            raise OrderNotOpen(f"order {self.id} is {self.status}; lines go on open orders")
        if quantity <= 0 or unit_price_cents < 0 or not sku:
            raise InvalidLine(f"bad line {sku!r} x{quantity} at {unit_price_cents}")
        self.trigger(LineAdded(sku=sku, quantity=quantity, unit_price_cents=unit_price_cents))

    def pay(self, amount_cents: int) -> None:
        if self.status != "open":
            raise OrderNotOpen(f"order {self.id} is {self.status}; only open orders are paid")
        if not self.lines:
            raise EmptyOrder(f"order {self.id} has no lines")
        if amount_cents != self.total_cents:
            raise WrongAmount(f"order {self.id} totals {self.total_cents}, got {amount_cents}")
        self.trigger(OrderPaid(amount_cents=amount_cents))

    def cancel(self, reason: str) -> None:
        if self.status == "paid":
            raise PaidOrderCannotBeCancelled(f"order {self.id} is paid; refund it instead")
        if self.status != "open":
            raise OrderNotOpen(f"order {self.id} is {self.status}; only open orders are cancelled")
        self.trigger(OrderCancelled(reason=reason))

    # state changes: one per event class, dispatched by the annotation
    def apply_placed(self, e: OrderPlaced) -> None:
        self.customer = e.customer
        self.status = "open"

    def apply_line(self, e: LineAdded) -> None:
        self.lines.append(Line(e.sku, e.quantity, e.unit_price_cents))
        self.total_cents += e.quantity * e.unit_price_cents

    def apply_paid(self, e: OrderPaid) -> None:
        self.status = "paid"

    def apply_cancelled(self, e: OrderCancelled) -> None:
        self.status = "cancelled"


class Customer(Aggregate):
    """A customer, in the decorator style: stream "customer-<id>"."""

    name: str
    orders_placed: int

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.name = ""
        self.orders_placed = 0

    @event("CustomerRegistered")
    def register(self, name: str) -> None:
        if self.name:
            raise OrderError(f"customer {self.id} is already registered")
        if not name:
            raise OrderError("a customer needs a name")
        self.name = name

    @event("CustomerOrdered")
    def count_order(self, order_id: str) -> None:
        self.orders_placed += 1


# ---------------------------------------------------------------- the application

class Shop(Application):
    """The command handlers: each loads, decides and saves (one atomic append)."""

    @command
    def register_customer(self, ctx: CommandContext, customer_id: str, name: str) -> None:
        if ctx.exists(Customer, customer_id):
            raise OrderError(f"customer {customer_id} is already registered")
        ctx.add(Customer(customer_id)).register(name)

    @command
    def place_order(self, ctx: CommandContext, order_id: str, customer_id: str) -> str:
        if ctx.exists(Order, order_id):
            raise AlreadyPlaced(f"order {order_id} is already placed")
        customer = ctx.get(Customer, customer_id)
        ctx.add(Order(order_id)).place(customer.name)
        customer.count_order(order_id)  # two aggregates, one atomic append
        return order_id

    @command
    def add_line(self, ctx: CommandContext, order_id: str, sku: str, quantity: int,
                 unit_price_cents: int) -> None:
        ctx.get(Order, order_id).add_line(sku, quantity, unit_price_cents)

    @command
    def pay(self, ctx: CommandContext, order_id: str, amount_cents: int) -> None:
        ctx.get(Order, order_id).pay(amount_cents)

    @command
    def cancel(self, ctx: CommandContext, order_id: str, reason: str) -> None:
        ctx.get(Order, order_id).cancel(reason)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, \
            cl.EventStore.open(f"{tmp}/shop", durability="os") as store:
        shop = Shop(store, snapshots={Order: SnapshotPolicy(every=50)})
        shop.register_customer("ada", "Ada Lovelace")
        shop.place_order("7", "ada", command_id="place-7")
        shop.add_line("7", "book", 2, 1250)
        shop.pay("7", 2500, command_id="pay-7")
        again = shop.pay("7", 2500, command_id="pay-7")  # a retry: recorded once
        order = shop.repository(Order).get("7")
        print(order, order.status, order.total_cents, "duplicate retry:", again.duplicate)
        try:
            shop.cancel("7", "changed my mind")
        except PaidOrderCannotBeCancelled as exc:
            print("refused:", exc)


if __name__ == "__main__":
    main()
