"""Type stubs of chronolog._core.reads (compiled): reads of a Log."""

from chronolog._core.events import RecordedEvent
from chronolog._core.recovery import RecoveredLog

def read_positions(log: RecoveredLog, start: int, stop: int,
                   backwards: bool = False) -> list[RecordedEvent]:
    """RecordedEvents of positions [start, stop) (clipped to head), in order or reversed."""
def stream_count(log: RecoveredLog, stream: str) -> int:
    """The number of visible events in `stream` (0 when it does not exist)."""
def read_stream(log: RecoveredLog, stream: str, lo: int, hi: int, backwards: bool,
                limit: int) -> list[RecordedEvent]:
    """RecordedEvents of `stream` with lo <= version < hi, at most `limit`."""
def streams(log: RecoveredLog, prefix: str = "") -> list[str]:
    """Names of the streams that hold visible events, in order of first appearance."""
def stream_total(log: RecoveredLog) -> int:
    """How many streams hold events."""
def segment_info(log: RecoveredLog) -> list[tuple[str, int, int]]:
    """(name, first position, bytes) of every segment."""

__all__ = ["read_positions", "read_stream", "segment_info", "stream_count", "stream_total",
           "streams"]
