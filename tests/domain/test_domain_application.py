"""Application: command handlers, retries on conflicts, idempotent command ids."""

from __future__ import annotations

import threading
import uuid

import pytest

import chronolog as cl
from chronolog.domain import Application, CommandContext, Repository
from chronolog.domain.application import command_uuid
from chronolog.domain.repository import append_aggregates


@pytest.fixture
def shop(store, orders):
    app = orders.Shop(store)
    app.register_customer("ada", "Ada")
    app.place_order("7", "ada")
    return app


def _interfere_once(store, orders, action):
    """A handler wrapper: before the first attempt saves, another writer changes order 7."""
    state = {"done": False}

    def meddle():
        if not state["done"]:
            state["done"] = True
            repo = Repository(store, orders.Order)
            o = repo.get("7")
            action(o)
            repo.save(o)
    return meddle


def test_command_registered_with_app_command_runs_and_saves(store, orders):
    app = Application(store)

    @app.command
    def open_order(ctx: CommandContext, order_id: str) -> str:
        ctx.add(orders.Order(order_id)).place("bob")
        return order_id

    result = app.open_order("9")
    assert (result.value, result.duplicate, result.attempts) == ("9", False, 1)
    assert store.stream_version("order-9") == 0


def test_conflict_is_retried_and_the_command_applies_on_fresh_state(shop, store, orders):
    meddle = _interfere_once(store, orders, lambda o: o.add_line("other", 1, 5))

    @shop.command
    def add(ctx, order_id):
        order = ctx.get(orders.Order, order_id)
        meddle()
        order.add_line("mine", 1, 7)

    result = shop.add("7")
    assert result.attempts == 2
    assert [ln.sku for ln in shop.repository(orders.Order).get("7").lines] == ["other", "mine"]


def test_conflict_retry_raises_the_domain_error_when_the_command_no_longer_holds(shop, store, orders):
    meddle = _interfere_once(store, orders, lambda o: o.cancel("by someone else"))

    @shop.command
    def add(ctx, order_id):
        order = ctx.get(orders.Order, order_id)
        meddle()
        order.add_line("mine", 1, 7)

    with pytest.raises(orders.OrderNotOpen):
        shop.add("7")
    assert [e.type for e in store.read_stream("order-7")] == ["OrderPlaced", "OrderCancelled"]


def test_conflicts_beyond_max_attempts_raise_wrong_expected_version(store, orders):
    app = orders.Shop(store, max_attempts=2)
    app.register_customer("ada", "Ada")
    app.place_order("7", "ada")

    @app.command
    def add(ctx, order_id):
        order = ctx.get(orders.Order, order_id)
        other = Repository(store, orders.Order)
        o = other.get(order_id)
        o.add_line("other", 1, 1)
        other.save(o)  # interferes on every attempt
        order.add_line("mine", 1, 1)

    with pytest.raises(cl.WrongExpectedVersionError):
        app.add("7")
    assert "mine" not in [ln.sku for ln in app.repository(orders.Order).get("7").lines]


def test_concurrent_commands_from_threads_lose_no_update(store, orders):
    app = orders.Shop(store, max_attempts=100)
    app.register_customer("ada", "Ada")
    app.place_order("7", "ada")

    def work(tag):
        for i in range(15):
            app.add_line("7", f"{tag}{i}", 1, 1)

    threads = [threading.Thread(target=work, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert app.repository(orders.Order).get("7").total_cents == 30


def test_same_command_id_twice_records_its_events_once(shop, store, orders):
    shop.add_line("7", "book", 1, 100)
    first = shop.pay("7", 100, command_id="pay-7")
    second = shop.pay("7", 100, command_id="pay-7")
    assert (first.duplicate, second.duplicate) == (False, True)
    assert [e.type for e in store.read_stream("order-7")].count("OrderPaid") == 1


def test_duplicate_command_returns_the_first_runs_value(shop):
    shop.register_customer("bob", "Bob")
    first = shop.place_order("8", "bob", command_id="place-8")
    assert shop.place_order("8", "bob", command_id="place-8").value == first.value == "8"


def test_command_events_get_ids_derived_from_the_command_id(shop, store):
    cid = uuid.uuid4()
    shop.add_line("7", "book", 1, 100, command_id=cid)
    last = store.read_stream("order-7")[-1]
    assert last.id == uuid.uuid5(cid, "0")


def test_same_command_id_after_a_restart_records_its_events_once(tmp_path, orders):
    path = tmp_path / "shop"
    with cl.EventStore.open(path, durability="os") as store:
        app = orders.Shop(store)
        app.register_customer("ada", "Ada", command_id="reg-ada")
        app.place_order("7", "ada", command_id="place-7")
        app.add_line("7", "book", 1, 100, command_id="line-1")
    with cl.EventStore.open(path, durability="os") as store:
        app = orders.Shop(store)
        again = app.add_line("7", "book", 1, 100, command_id="line-1")
        assert again.duplicate
        assert app.repository(orders.Order).get("7").total_cents == 100
        assert app.place_order("7", "ada", command_id="place-7").duplicate


def test_a_duplicate_command_does_not_run_its_handler(shop, store):
    calls = []

    @shop.command
    def noop(ctx):
        calls.append(1)

    shop.noop(command_id="n-1")
    shop.noop(command_id="n-1")
    assert calls == [1]


def test_a_command_that_raised_can_be_retried_with_the_same_id(shop, store, orders):
    with pytest.raises(orders.EmptyOrder):
        shop.pay("7", 0, command_id="pay-x")
    shop.add_line("7", "book", 1, 100)
    assert not shop.pay("7", 100, command_id="pay-x").duplicate


def test_the_store_returns_the_original_result_for_a_repeated_deterministic_append(store, orders):
    cid = command_uuid("c")
    a = orders.Order("7")
    a.place("ada")
    first = append_aggregates(store, [a], lambda i: uuid.uuid5(cid, str(i)))
    b = orders.Order("7")
    b.place("ada")
    again = append_aggregates(store, [b], lambda i: uuid.uuid5(cid, str(i)))
    assert again == first and store.head == 1


def test_handle_dispatches_by_name(shop, orders):
    shop.handle("cancel", "7", "no")
    assert shop.repository(orders.Order).get("7").status == "cancelled"
