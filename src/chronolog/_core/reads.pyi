"""Type stubs of chronolog._core.reads (compiled): reads of a Log."""

from chronolog._core.events import RecordedEvent
from chronolog._core.log import Log

def read_positions(log: Log, start: int, stop: int,
                   backwards: bool = False) -> list[RecordedEvent]:
    """RecordedEvents of positions [start, stop) (clipped to head), in order or reversed."""
def stream_count(log: Log, stream: str) -> int:
    """The number of visible events in `stream` (0 when it does not exist)."""
def read_stream(log: Log, stream: str, lo: int, hi: int, backwards: bool,
                limit: int) -> list[RecordedEvent]:
    """RecordedEvents of `stream` with lo <= version < hi, at most `limit`."""
def streams(log: Log, prefix: str = "") -> list[str]:
    """Names of the streams that hold visible events, in order of first appearance."""
def stream_total(log: Log) -> int:
    """How many streams hold events."""
def segment_info(log: Log) -> list[tuple[str, int, int]]:
    """(name, first position, bytes) of every segment."""

__all__ = ["read_positions", "read_stream", "segment_info", "stream_count", "stream_total",
           "streams"]
