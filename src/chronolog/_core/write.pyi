"""Type stubs of chronolog._core.write (compiled): frames into the active segment."""

from typing_extensions import disjoint_base

from chronolog._core.commit import GroupCommitLog

@disjoint_base
class WritingLog(GroupCommitLog):
    """A log that writes sealed frames at the end of its active segment and rolls segments."""

__all__ = ["WritingLog"]
