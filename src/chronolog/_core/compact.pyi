"""Type stubs of chronolog._core.compact (compiled): the compression tools of a store."""

from chronolog._core.codec import Compressor
from chronolog._core.log import Log

def compact_sealed(log: Log, target: Compressor | None) -> tuple[int, int, int]:
    """Rewrite every sealed segment with `target` (None: uncompressed), offline."""
def sample_records(log: Log, n: int) -> list[bytes]:
    """Up to n whole records, spread evenly over the visible log."""
def use_dictionary(log: Log, dict_id: int) -> None:
    """Compress new frames with stored dictionary `dict_id`."""
def frame_totals(log: Log) -> tuple[int, int, int, int]:
    """(frames, stored bytes, decoded bytes) over every frame, from their headers only."""

__all__ = ["compact_sealed", "frame_totals", "sample_records", "use_dictionary"]
