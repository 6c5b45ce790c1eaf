"""Type stubs of chronolog._core.commit (compiled): group commit, fail-stop, checkpoints."""

from chronolog._core.recovery import RecoveredLog

class GroupCommitLog(RecoveredLog):
    """A recovered log that syncs what its writers wrote, together, and writes checkpoints."""

    spin_ns: int  # how long a group-commit waiter spins before it sleeps: -1 adaptive, 0 never

    def sync(self) -> None: ...
    def checkpoint(self) -> None: ...

__all__ = ["GroupCommitLog"]
