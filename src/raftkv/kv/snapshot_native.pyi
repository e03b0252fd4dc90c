"""Types of the C module kv/snapshot_native.c (built by setup.py unless RAFTKV_PURE)."""

from raftkv.kv.records import KeyRecord

class Builder:
    def __init__(self, capacity: int = 0) -> None: ...
    @property
    def length(self) -> int: ...
    def append(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def walk(
        self,
        shards: list[dict[str, KeyRecord]],
        release_gil: bool,
        progress: bytearray | None = None,
        idle_seconds: float = 0.0,
    ) -> bool: ...
    def finish(self) -> bytes: ...

def use(record_type: type[KeyRecord]) -> None: ...
def encode_shards(
    shards: list[dict[str, KeyRecord]],
    release_gil: bool,
    size_hint: int = 0,
    progress: bytearray | None = None,
    idle_seconds: float = 0.0,
) -> bytes | None: ...
def walks_moved() -> int: ...
