"""The orders example: every command path, and rule violations that record nothing."""

from __future__ import annotations

import pytest


@pytest.fixture
def shop(store, orders):
    app = orders.Shop(store)
    app.register_customer("ada", "Ada")
    app.place_order("7", "ada")
    return app


def test_place_order_records_the_order_and_counts_it_on_the_customer(shop, store, orders, types_of):
    assert types_of("order-7") == ["OrderPlaced"]
    assert types_of("customer-ada") == ["CustomerRegistered", "CustomerOrdered"]
    order = shop.repository(orders.Order).get("7")
    assert (order.customer, order.status, order.version) == ("Ada", "open", 0)


def test_place_order_writes_both_aggregates_in_one_append(shop, store):
    placed = store.read_stream("order-7")[0]
    counted = store.read_stream("customer-ada")[1]
    assert abs(counted.position - placed.position) == 1
    assert placed.timestamp == counted.timestamp


def test_placing_an_order_twice_raises_and_records_nothing(shop, store, orders):
    head = store.head
    with pytest.raises(orders.AlreadyPlaced):
        shop.place_order("7", "ada")
    assert store.head == head


def test_placing_an_order_for_an_unknown_customer_records_nothing(shop, store, orders):
    head = store.head
    with pytest.raises(orders.cl.domain.AggregateNotFoundError):
        shop.place_order("8", "nobody")
    assert store.head == head and store.stream_version("order-8") is None


def test_add_line_updates_lines_and_total(shop, orders):
    shop.add_line("7", "book", 2, 1250)
    shop.add_line("7", "pen", 1, 99)
    order = shop.repository(orders.Order).get("7")
    assert order.lines == [orders.Line("book", 2, 1250), orders.Line("pen", 1, 99)]
    assert order.total_cents == 2599


def test_add_line_with_zero_quantity_raises_and_records_nothing(shop, store, orders):
    head = store.head
    with pytest.raises(orders.InvalidLine):
        shop.add_line("7", "book", 0, 1250)
    assert store.head == head


def test_pay_with_the_exact_total_marks_the_order_paid(shop, orders):
    shop.add_line("7", "book", 2, 1250)
    shop.pay("7", 2500)
    assert shop.repository(orders.Order).get("7").status == "paid"


def test_pay_with_a_wrong_amount_raises_and_records_nothing(shop, store, orders):
    shop.add_line("7", "book", 2, 1250)
    head = store.head
    with pytest.raises(orders.WrongAmount):
        shop.pay("7", 2499)
    assert store.head == head


def test_pay_of_an_empty_order_raises_and_records_nothing(shop, store, orders):
    head = store.head
    with pytest.raises(orders.EmptyOrder):
        shop.pay("7", 0)
    assert store.head == head


def test_cancel_of_an_open_order_marks_it_cancelled(shop, orders):
    shop.cancel("7", "changed my mind")
    assert shop.repository(orders.Order).get("7").status == "cancelled"


def test_cancel_of_a_paid_order_raises_and_records_nothing(shop, store, orders, types_of):
    shop.add_line("7", "book", 1, 100)
    shop.pay("7", 100)
    head = store.head
    with pytest.raises(orders.PaidOrderCannotBeCancelled):
        shop.cancel("7", "too late")
    assert store.head == head
    assert types_of("order-7") == ["OrderPlaced", "LineAdded", "OrderPaid"]


def test_add_line_to_a_cancelled_order_raises_and_records_nothing(shop, store, orders):
    shop.cancel("7", "no")
    head = store.head
    with pytest.raises(orders.OrderNotOpen):
        shop.add_line("7", "book", 1, 100)
    assert store.head == head


def test_registering_a_customer_twice_raises_and_records_nothing(shop, store, orders):
    head = store.head
    with pytest.raises(orders.OrderError):
        shop.register_customer("ada", "Ada again")
    assert store.head == head


def test_example_main_runs(orders, capsys):
    orders.main()
    assert "duplicate retry: True" in capsys.readouterr().out
