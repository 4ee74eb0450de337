"""Type stubs of the extension module rbio._rbio."""

from os import PathLike
from typing import Any, Optional, Sequence, Union

__version__: str

_Path = Union[str, PathLike[str]]
_Buffer = Any  # any object with the buffer protocol (bytes, bytearray, memoryview, numpy, torch)

class RbioError(Exception):
    """A bringup or inspection failed; the message is the line `rbio` prints after `rbio: error:`."""

class Report:
    """What rbio.bringup() recovered."""
    @property
    def counts(self) -> dict[str, Any]: ...
    @property
    def checkpoint(self) -> Optional[dict[str, int]]: ...
    @property
    def phases(self) -> dict[str, float]: ...
    @property
    def entries(self) -> list[dict[str, Any]]: ...
    @property
    def mirrors(self) -> list[dict[str, Any]]: ...
    @property
    def ignored(self) -> Optional[str]: ...
    @property
    def warnings(self) -> list[str]: ...
    @property
    def index(self) -> list[tuple[str, int, int, Any, Any, Any, Any]]:
        """(key, offset, size, shape, dtype, fmt, cached_positions) per entry, checkpoint order."""
    @property
    def free_slots(self) -> list[int]: ...
    @property
    def next_slot(self) -> int: ...
    def to_json(self) -> str:
        """What `rbio bringup --json` prints for the same device and options."""
    def to_dict(self) -> dict[str, Any]: ...

class Inspection:
    """What rbio.inspect() found."""
    def to_json(self) -> str:
        """What `rbio inspect --json` prints for the same device and options."""
    def to_dict(self) -> dict[str, Any]: ...

def bringup(
    path: _Path,
    *,
    block_align: int = 4096,
    header_bytes: int = 4096,
    slot_bytes: int = 1 << 20,
    meta_total_bytes: int = 256 << 20,
    capacity_bytes: int = 0,
    meta_magic: Union[str, bytes] = "LMCIDX01",
    meta_version: int = 1,
    namespace: str = "object",
    engine: Optional[str] = None,
    workers: Optional[int] = None,
    window: int = 256,
    sqes_per_enter: Optional[int] = None,
    fixed_buffers: bool = True,
    direct: bool = False,
    ignore_device_path: bool = False,
    device_path: Optional[str] = None,
    verify: bool = True,
    drop_unreadable: bool = False,
    entries: bool = False,
) -> Report:
    """Brings a raw_block device up as `rbio bringup` does, with the GIL released."""

def bringup_many(
    paths: Sequence[_Path],
    *,
    block_align: int = 4096,
    header_bytes: int = 4096,
    slot_bytes: int = 1 << 20,
    meta_total_bytes: int = 256 << 20,
    capacity_bytes: int = 0,
    meta_magic: Union[str, bytes] = "LMCIDX01",
    meta_version: int = 1,
    namespace: str = "object",
    engine: Optional[str] = None,
    workers: Optional[int] = None,
    window: int = 256,
    sqes_per_enter: Optional[int] = None,
    fixed_buffers: bool = True,
    direct: bool = False,
    ignore_device_path: bool = False,
    device_path: Optional[str] = None,
    verify: bool = True,
    drop_unreadable: bool = False,
    entries: bool = False,
) -> list[Union[Report, RbioError]]:
    """Brings several devices up at once as `rbio bringup DEV DEV...` does, with the GIL
    released: a Report, or the RbioError (returned, not raised), per path, in order."""

def inspect(
    path: _Path,
    *,
    block_align: int = 4096,
    header_bytes: int = 4096,
    slot_bytes: int = 1 << 20,
    meta_total_bytes: int = 256 << 20,
    capacity_bytes: int = 0,
    meta_magic: Union[str, bytes] = "LMCIDX01",
    meta_version: int = 1,
    namespace: str = "object",
    engine: Optional[str] = None,
    workers: Optional[int] = None,
    window: int = 256,
    sqes_per_enter: Optional[int] = None,
    fixed_buffers: bool = True,
    direct: bool = False,
    ignore_device_path: bool = False,
    device_path: Optional[str] = None,
    entries: bool = False,
) -> Inspection:
    """Reads both checkpoint mirrors as `rbio inspect` does, with the GIL released."""

class RawBlockDevice:
    """LMCache's RawBlockDevice on rbio's engines (see rbio.lmcache)."""
    def __init__(
        self,
        path: str,
        writable: bool,
        use_odirect: bool = False,
        use_iouring: bool = False,
        use_uring_cmd: bool = False,
        alignment: int = 4096,
        io_engine: Optional[str] = None,
        iouring_queue_depth: int = 256,
    ) -> None: ...
    def size_bytes(self) -> int: ...
    def worker_error(self) -> Optional[str]: ...
    def nvme_nsid(self) -> int: ...
    def nvme_lba_shift(self) -> int: ...
    def nvme_lba_size(self) -> int: ...
    def fetch_fdp_status(self) -> list[tuple[int, int]]: ...
    def fixed_buffer_status(self) -> tuple[bool, int]: ...
    def register_fixed_buffers(self, buffer_ptrs: Sequence[int], buffer_sizes: Sequence[int]) -> None: ...
    def pwrite_from_buffer(
        self, offset: int, data: _Buffer, payload_len: Optional[int] = None, total_len: Optional[int] = None
    ) -> None: ...
    def pread_into(self, offset: int, out: _Buffer, payload_len: int, total_len: Optional[int] = None) -> None: ...
    def batched_write(
        self,
        offsets: Sequence[int],
        buffers: Sequence[_Buffer],
        total_lens: Sequence[int],
        placement_ids: Optional[Sequence[Optional[int]]] = None,
        payload_lens: Optional[Sequence[int]] = None,
    ) -> int: ...
    def batched_read(self, offsets: Sequence[int], buffers: Sequence[_Buffer], total_lens: Sequence[int]) -> int: ...
    def wait_iouring(self, batch_id: int) -> tuple[list[bool], list[tuple[int, str]]]: ...
    def read_uring(self, offset: int, data: _Buffer, payload_len: int, total_len: Optional[int] = None) -> None: ...
    def write_uring(
        self,
        offset: int,
        data: _Buffer,
        payload_len: int,
        total_len: Optional[int] = None,
        placement_id: Optional[int] = None,
    ) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
