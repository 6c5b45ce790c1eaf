"""Type stubs of chronolog._core.commit (compiled): group commit, fail-stop, checkpoints."""

from typing import Any

from typing_extensions import disjoint_base

from chronolog._core.recovery import RecoveredLog

def acquire_through(lock: Any) -> BaseException | None: ...

@disjoint_base
class GroupCommitLog(RecoveredLog):
    """A recovered log that syncs what its writers wrote, together, and writes checkpoints."""

    spin_ns: int  # how long a group-commit waiter spins before it sleeps: -1 adaptive, 0 never
    spin_late_ns: int  # a spin whose CPU comes back later than this ends, and spinning backs off
    close_tail_budget_ns: int  # close leaves a tail whose estimated cost on open is at most this
    @property
    def spin_backoff(self) -> int: ...  # how long the next back-off lasts (ns)
    @property
    def spin_off_until(self) -> int: ...  # CLOCK_MONOTONIC ns until which waiters do not spin

    def sync(self) -> None: ...
    def checkpoint(self) -> None: ...

__all__ = ["GroupCommitLog", "acquire_through"]
