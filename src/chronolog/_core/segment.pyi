"""Type stubs of chronolog._core.segment (compiled): segment files, their headers and the
store header."""

from typing_extensions import disjoint_base

from chronolog._core.fileio import FileIO

def segment_name(first_position: int) -> str:
    """The file name of the segment that starts at `first_position`."""

def encode_store_header(store_id: bytes, created_ns: int) -> bytes:
    """The 64-byte header of a new store: store id at 16, created at 32."""

def decode_store_header(h: bytes, path: str) -> bytes:
    """Check a store header; return its store id or raise CorruptionError."""

def encode_segment_header(first_position: int, salt: int, store_id: bytes,
                          created_ns: int) -> bytes:
    """The 64-byte header of a new segment."""

def decode_segment_header(h: bytes, path: str, store_id: bytes) -> tuple[int, int, int]:
    """Check a segment header; return (first_position, salt, format version) or raise
    CorruptionError."""

@disjoint_base
class Segment:
    """One segment file of the log, read through a shared read-only mapping."""

    @property
    def path(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def first_position(self) -> int: ...
    @property
    def salt(self) -> int: ...
    @property
    def ordinal(self) -> int: ...
    @property
    def version(self) -> int: ...
    end: int
    def __init__(self, io: FileIO, path: str, first_position: int, salt: int,
                 ordinal: int, fd: int = -1, version: int = ...) -> None: ...
