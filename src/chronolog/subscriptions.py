"""Subscriptions: catch up on history, then follow live appends (in this process or another),
plus `wait_for` (read-your-writes) and the in-process append signal that wakes them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from chronolog._args import flag, name_list, timeout_seconds
from chronolog._core.events import RecordedEvent
from chronolog._core.reads import read_positions
from chronolog._wakeup import AppendNotifier, HeadWaiter
from chronolog.errors import (
    ConcurrentUseError,
    CorruptionError,
    InvalidArgumentError,
    ResourceLimitError,
    StoreClosedError,
)
from chronolog.scan import make_scanner

if TYPE_CHECKING:
    from chronolog._core.log import Log

__all__ = [
    "AppendNotifier",
    "AsyncSubscription",
    "Subscription",
    "subscribe",
    "subscribe_async",
    "wait_for",
]

DEFAULT_SUBSCRIBE_BATCH = 4096

T = TypeVar("T")


class Subscription(Generic[T]):
    """A catch-up subscription: replays the store from a position, then follows appends.

    Yields RecordedEvents (or, with batches=True, Arrow RecordBatches with the scan's
    columns) in position order, every matching event exactly once, without gaps. History is
    read in chunks of batch_size events, so a subscription that falls behind holds at most
    one chunk in memory and never slows the writer.

    With a timeout, iteration stops (StopIteration) when nothing new arrives for that many
    seconds; iterate again to go on from where it stopped. close(), from any thread, ends a
    blocked iteration promptly.

    Invariants:
        - `position` is the next position to examine; every event below it that matches the
          filters was yielded once (or is waiting in the current chunk).

    Thread-safety: iterate from one thread at a time; close() may be called from any thread.

    Example:
        >>> with store.subscribe(from_position=0, timeout=1.0) as sub:  # doctest: +SKIP
        ...     for event in sub:
        ...         print(event.position, event.type)
    """

    def __init__(self, log: Log, notifier: AppendNotifier | None, from_position: int = 0, *,
                 types: Iterable[str] | None = None, stream_prefix: str | None = None,
                 batch_size: int = DEFAULT_SUBSCRIBE_BATCH, batches: bool = False,
                 timeout: float | None = None) -> None:
        if isinstance(from_position, bool) or not isinstance(from_position, int) or from_position < 0:
            raise InvalidArgumentError(f"from_position must be an int >= 0, got {from_position!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be an int >= 1, got {batch_size!r}")
        timeout = timeout_seconds(timeout)
        types = name_list(types, "types")
        if stream_prefix is not None and not isinstance(stream_prefix, str):
            raise InvalidArgumentError(f"stream_prefix must be a str or None, got {stream_prefix!r}")
        if log.closed:
            raise StoreClosedError(log.path)
        self._log = log
        self._notifier = notifier
        self._next = from_position
        self._scanner: Any = None  # the scan a filtered or batched catch-up goes on with
        self._types = types
        self._prefix = stream_prefix or None
        self._batch_size = batch_size
        self._batches = flag(batches, "batches")
        self._timeout = timeout
        self._pending: deque[Any] = deque()
        self._closed = False
        self._lock = threading.Lock()
        self._busy = False
        # Validate the filters now (the scanner refuses bad ones) rather than on first next().
        make_scanner(log, 0, 0, types=self._types, stream_prefix=self._prefix)
        self._waiter = HeadWaiter(log, notifier)

    @property
    def position(self) -> int:
        """The next position this subscription will look at."""
        return self._next

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed

    def __iter__(self) -> Subscription[T]:
        return self

    def __next__(self) -> T:
        item = self._take_one(self._timeout)
        if item is None:
            raise StopIteration
        return item

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the subscription; a blocked iteration (in any thread) returns promptly.

        Example:
            >>> sub.close()  # doctest: +SKIP
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            busy = self._busy
        self._waiter.wake()
        if not busy:
            self._waiter.close()

    def next(self, timeout: float | None = None) -> T | None:
        """The next item, waiting up to `timeout` seconds (None: forever); None on timeout
        or once closed.

        Raises:
            StoreClosedError: the store was closed under the subscription.
            CorruptionError: a frame read fails its checks.
            InvalidArgumentError: timeout is not a number of seconds >= 0 or None.
        """
        return self._take_one(timeout_seconds(timeout))

    def _take_one(self, timeout: float | None) -> T | None:
        with self._lock:
            if self._busy:
                raise ConcurrentUseError("a Subscription is iterated by one thread at a time: "
                                         "give each thread a subscription of its own")
            if self._closed:
                return None
            self._busy = True
        try:
            return self._next_item(timeout)
        finally:
            with self._lock:
                self._busy = False
                closed = self._closed
            if closed:
                self._waiter.close()

    def take(self, timeout: float | None = None) -> list[T]:
        """Every item ready now (at most one chunk), waiting up to `timeout` for the first;
        [] on timeout or once closed."""
        first = self._take_one(timeout_seconds(timeout))
        if first is None:
            return []
        out = [first]
        while self._pending:
            out.append(self._pending.popleft())
        return out

    def _next_item(self, timeout: float | None) -> T | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed:
            if self._pending:
                return self._pending.popleft()  # type: ignore[no-any-return]
            head = self._waiter.head()
            if self._next < head:
                self._fetch(head)
                self._waiter.progressed()
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self._waiter.wait_beyond(head, remaining, lambda: self._closed)
        return None

    def _fetch(self, head: int) -> None:
        """Read the next chunk of [next, head) into _pending."""
        stop = min(head, self._next + self._batch_size) if self._types is None \
            and self._prefix is None else head
        notifier = self._notifier
        with notifier.reading() if notifier is not None else contextlib.nullcontext():
            if self._batches:
                scanner = self._scanner_from(stop, None)
                batch = scanner.next_batch()
                if batch is not None:
                    self._pending.append(batch)
                self._next = scanner.position if batch is not None else stop
            elif self._types is None and self._prefix is None:
                try:
                    events = read_positions(self._log, self._next, stop, False)
                except CorruptionError:
                    # The good events before the damage first (a chunk is up to batch_size
                    # events): they are delivered, and the damaged one raises at the next fetch.
                    events, stop = _read_up_to_damage(self._log, self._next, stop)
                self._pending.extend(events)
                self._next = stop
            else:
                scanner = self._scanner_from(stop, ["position"])
                batch = scanner.next_batch()
                if batch is not None:
                    self._pending.extend(_read_runs(self._log, batch.column(0).to_numpy()))
                self._next = scanner.position if batch is not None else stop


    def _scanner_from(self, stop: int, columns: list[str] | None) -> Any:
        """The scan the subscription goes on with: the previous fetch's while it has more (a
        scan checks each frame's body once, so a new scan per fetch checked a frame of a
        million events again for every batch of catch-up), else a new one up to `stop`."""
        scanner = self._scanner
        if scanner is None or scanner.position != self._next or scanner.position >= scanner.stop:
            scanner = make_scanner(self._log, self._next, stop, types=self._types,
                                   stream_prefix=self._prefix, batch_size=self._batch_size,
                                   columns=columns)
            self._scanner = scanner
        return scanner


def _read_up_to_damage(log: Log, start: int, stop: int) -> tuple[list[RecordedEvent], int]:
    """The events of [start, stop) one at a time up to the first that fails, and where it is;
    raises when the first one fails."""
    out: list[RecordedEvent] = []
    position = start
    while position < stop:
        try:
            out.extend(read_positions(log, position, position + 1, False))
        except CorruptionError:
            if not out:
                raise
            break
        position += 1
    return out, position


def _read_runs(log: Log, positions: Any) -> list[RecordedEvent]:
    """RecordedEvents of sorted positions, read one contiguous run at a time."""
    out: list[RecordedEvent] = []
    n = len(positions)
    i = 0
    while i < n:
        j = i + 1
        while j < n and positions[j] == positions[j - 1] + 1:
            j += 1
        out.extend(read_positions(log, int(positions[i]), int(positions[j - 1]) + 1, False))
        i = j
    return out


class AsyncSubscription(Generic[T]):
    """The asyncio form of Subscription: `async for event in store.subscribe_async(...)`.

    Waits run in one worker thread owned by the subscription, so the event loop never
    blocks; items arrive a chunk at a time. Same ordering, filters and timeout as
    Subscription (a timeout ends the `async for`). A step that is cancelled (a task
    cancelled, `asyncio.wait_for` timing out) leaves the subscription open: the wait goes on in
    the worker, and what it fetches is what the next step returns, nothing skipped.

    Thread-safety: use from one event loop; close() may be called from anywhere.

    Example:
        >>> async with store.subscribe_async(timeout=1.0) as sub:  # doctest: +SKIP
        ...     async for event in sub:
        ...         print(event.position)
    """

    def __init__(self, sub: Subscription[T]) -> None:
        self._sub = sub
        self._ready: deque[T] = deque()
        self._executor: ThreadPoolExecutor | None = None
        # The worker's wait, while nothing took its result (a cancelled step leaves it running).
        self._inflight: Future[list[T]] | None = None

    @property
    def position(self) -> int:
        """The next position the subscription will look at."""
        return self._sub.position

    def __aiter__(self) -> AsyncSubscription[T]:
        return self

    async def __anext__(self) -> T:
        if self._ready:
            return self._ready.popleft()
        if self._sub.closed:
            raise StopAsyncIteration
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="chronolog-subscribe")
        import asyncio  # (not at `import chronolog`: only async iteration needs it)

        if self._inflight is None:
            try:
                self._inflight = self._executor.submit(self._sub.take, self._sub._timeout)
            except RuntimeError as exc:  # its thread cannot start (a thread or memory limit)
                raise ResourceLimitError(str(self._sub._log.path), "start the thread an async "
                                         "subscription waits in", exc, ", or iterate the "
                                         "subscription without async (store.subscribe)") from exc
        # Shielded: a cancelled step must not cancel the wait (its items would be lost, and a
        # subscription closed on cancel ended an `async for` at the first wait_for timeout).
        items = await asyncio.shield(asyncio.wrap_future(self._inflight))
        self._inflight = None
        if not items:
            raise StopAsyncIteration
        self._ready.extend(items[1:])
        return items[0]

    async def __aenter__(self) -> AsyncSubscription[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def aclose(self) -> None:
        """Close the subscription (async spelling)."""
        self.close()

    def close(self) -> None:
        """End the subscription; a pending `async for` step ends promptly."""
        self._sub.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)


def subscribe(log: Log, notifier: AppendNotifier | None, from_position: int = 0, *,
              types: Iterable[str] | None = None, stream_prefix: str | None = None,
              batch_size: int = DEFAULT_SUBSCRIBE_BATCH, batches: bool = False,
              timeout: float | None = None) -> Subscription[Any]:
    """A catch-up subscription over `log` (see Subscription); EventStore.subscribe calls it.

    Example:
        >>> sub = subscribe(store._log, store._notifier, 0, timeout=0.1)  # doctest: +SKIP
    """
    return Subscription(log, notifier, from_position, types=types, stream_prefix=stream_prefix,
                        batch_size=batch_size, batches=batches, timeout=timeout)


def subscribe_async(log: Log, notifier: AppendNotifier | None, from_position: int = 0, *,
                    types: Iterable[str] | None = None, stream_prefix: str | None = None,
                    batch_size: int = DEFAULT_SUBSCRIBE_BATCH, batches: bool = False,
                    timeout: float | None = None) -> AsyncSubscription[Any]:
    """The asyncio form of subscribe (see AsyncSubscription).

    Example:
        >>> async for ev in subscribe_async(store._log, store._notifier, timeout=0.1):  # doctest: +SKIP
        ...     pass
    """
    return AsyncSubscription(subscribe(log, notifier, from_position, types=types,
                                       stream_prefix=stream_prefix, batch_size=batch_size,
                                       batches=batches, timeout=timeout))


def wait_for(log: Log, notifier: AppendNotifier | None, position: int,
             timeout: float | None = None) -> bool:
    """Block until the event at `position` is visible to `log` (read-your-writes, also for a
    read-only handle following another process). Returns False on timeout.

    Raises:
        InvalidArgumentError: a negative position or timeout.
        StoreClosedError: the store is (or gets) closed.

    Example:
        >>> res = writer.append("order-7", [NewEvent("OrderPlaced", b"{}")])  # doctest: +SKIP
        >>> reader.wait_for(res.last_position, timeout=5.0)  # doctest: +SKIP
        True
    """
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise InvalidArgumentError(f"position must be an int >= 0, got {position!r}")
    timeout = timeout_seconds(timeout)
    waiter = HeadWaiter(log, notifier)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            head = waiter.head()
            if head > position:
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            waiter.wait_beyond(head, remaining, lambda: False)
            if notifier is not None and notifier.closed:
                raise StoreClosedError(log.path)
    finally:
        waiter.close()

