"""Type stubs of chronolog._core.commit (compiled): group commit, fail-stop, checkpoints."""

from chronolog._core.recovery import RecoveredLog

class GroupCommitLog(RecoveredLog):
    """A recovered log that syncs what its writers wrote, together, and writes checkpoints."""

    def sync(self) -> None: ...
    def checkpoint(self) -> None: ...

__all__ = ["GroupCommitLog"]
