"""Type stubs of chronolog._core.verify (compiled): the whole-store check."""

from typing import Any

from chronolog._core.recovery import RecoveredLog

TAIL_LOOK_PAUSE_S: float  # a reader's verify looks again at a half-written tail after it

def verify(log: RecoveredLog) -> dict[str, Any]:
    """Check every frame and record of every segment and the indexes against them."""

__all__ = ["verify"]
