"""Type stubs of chronolog._core.codec (compiled): zstd for frame bodies, dictionaries."""

from typing_extensions import disjoint_base

DEFAULT_BLOCK_BYTES: int
RESTORE_DICTIONARY: str  # the remedy of a CorruptionError about a dictionary

def dictionary_name(dict_id: int) -> str: ...
def train(samples: list[bytes], capacity: int = 112640) -> bytes:
    """Train a zstd dictionary on `samples`; return its bytes."""

@disjoint_base
class Dictionaries:
    """The trained zstd dictionaries of a store (primary files), loaded on first use."""

    @property
    def path(self) -> str: ...
    @property
    def newest(self) -> int: ...
    def __init__(self, path: str, listing: list[str] | None = None) -> None: ...
    def add(self, data: bytes, io: object = None, at_least: int = 1) -> int: ...

@disjoint_base
class Compressor:
    """Compresses one frame body at a time (the writer's)."""

    @property
    def level(self) -> int: ...
    @property
    def dict_id(self) -> int: ...
    @property
    def block_bytes(self) -> int: ...
    def __init__(self, level: int = 1, dicts: Dictionaries | None = None, dict_id: int = 0,
                 block_bytes: int = ...) -> None: ...
    def use_dictionary(self, dicts: Dictionaries, dict_id: int) -> None: ...

@disjoint_base
class Decoder:
    """Decodes compressed frame bodies."""

    def __init__(self, dicts: Dictionaries | None) -> None: ...
